"""Which ports of a Verilog multiplier are operand A, operand B and the product.

A is the activation (LUT row), B the weight (LUT column); all bit lists are LSB first.
Conventions (``detect_ports(..., convention=...)``):

===============  ==========================================================================
``subxpat``      scalar inputs ``in0..in(n-1)``: A = in0..in(a-1) (in0 = LSB), B = the rest;
                 scalar outputs ``out0..`` (or SubXPAT's raw ``a_out0..``), out0 = LSB
``evoapprox``    EvoApproxLib: vectors ``A``, ``B`` and ``O``
``plain``        vectors ``a``, ``b`` and ``y``
``positional``   any module with exactly two input ports and one output port: A = the first
                 input declared, B = the second
``explicit``     bit lists given by the user, e.g. ``a="in0..in7" b="in8..in15" y="out0..out15"``
``auto``         the first of subxpat, evoapprox, plain, positional that fits
===============  ==========================================================================

Bit-list syntax for ``explicit``: comma-separated items, LSB first; an item is a port name
(all its bits, LSB first), ``name[i]``, ``name[h:l]`` (bits l..h, LSB first) or a range of
scalar ports ``in0..in7`` / ``in7..in0`` (in the order written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError

CONVENTIONS = ("auto", "subxpat", "evoapprox", "plain", "positional", "explicit")
MAX_OPERAND_BITS = 8


class PortError(ConfigError):
    """The module's ports do not form a multiplier of the expected shape (exit 2)."""


@dataclass(frozen=True)
class PortInfo:
    """One module port as yosys reports it (``bits`` are net ids or constants, LSB first)."""

    name: str
    direction: str
    bits: tuple
    signed: bool = False
    offset: int = 0
    upto: bool = False

    @property
    def width(self) -> int:
        return len(self.bits)

    def position(self, index: int) -> int:
        """Position (0 = LSB) of the Verilog index ``index`` of this port."""
        pos = (self.offset + self.width - 1 - index) if self.upto else (index - self.offset)
        if not 0 <= pos < self.width:
            lo, hi = self.offset, self.offset + self.width - 1
            raise PortError(f"bit {self.name}[{index}] is outside the port's range [{hi}:{lo}]")
        return pos


Bit = tuple[str, int]   # (port name, position from LSB)


@dataclass(frozen=True)
class PortMap:
    """Operand and product bits of a multiplier, LSB first."""

    a: tuple[Bit, ...]
    b: tuple[Bit, ...]
    y: tuple[Bit, ...]
    convention: str
    signed_hint: bool | None = None   # from 'signed' port declarations or an EvoApprox name
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def a_bits(self) -> int:
        return len(self.a)

    @property
    def w_bits(self) -> int:
        return len(self.b)

    @property
    def out_bits(self) -> int:
        return len(self.y)

    def describe(self) -> dict:
        def fmt(bits):
            return [f"{p}[{i}]" for p, i in bits]
        return {"convention": self.convention, "a": fmt(self.a), "b": fmt(self.b), "y": fmt(self.y)}


def _whole(p: PortInfo) -> tuple[Bit, ...]:
    return tuple((p.name, i) for i in range(p.width))


_SCALAR = re.compile(r"^(?P<pfx>[A-Za-z_][A-Za-z_]*?)(?P<num>\d+)$")


def _numbered(ports: list[PortInfo], pattern: str) -> list[tuple[int, PortInfo]] | None:
    rx = re.compile(pattern)
    out = []
    for p in ports:
        m = rx.fullmatch(p.name)
        if not m or p.width != 1:
            return None
        out.append((int(m.group("n")), p))
    out.sort(key=lambda t: t[0])
    if [n for n, _ in out] != list(range(len(out))):
        return None
    return out


def _split_ab(total: int, a_bits: int | None, w_bits: int | None, what: str) -> tuple[int, int]:
    if a_bits is None and w_bits is None:
        if total % 2:
            raise PortError(f"{what} has {total} operand input bits, which do not split evenly "
                            "into A and B; pass --bits A and --w-bits B")
        return total // 2, total // 2
    if a_bits is None:
        a_bits = total - w_bits
    if w_bits is None:
        w_bits = total - a_bits
    if a_bits + w_bits != total or a_bits < 1 or w_bits < 1:
        raise PortError(f"{what} has {total} operand input bits, not {a_bits} (A) + {w_bits} (B)")
    return a_bits, w_bits


def parse_bit_list(spec: str, ports: dict[str, PortInfo]) -> tuple[Bit, ...]:
    """Parse an explicit bit list (see the module docstring) against the module's ports."""
    bits: list[Bit] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        m = re.fullmatch(r"(?P<a>[A-Za-z_][A-Za-z0-9_$]*?)(?P<i>\d+)\.\.(?P<b>[A-Za-z_][A-Za-z0-9_$]*?)(?P<j>\d+)", item)
        if m and m.group("a") == m.group("b"):
            i, j = int(m.group("i")), int(m.group("j"))
            digits = m.group("i")
            pad = len(digits) if len(digits) > 1 and digits.startswith("0") else 0  # pi00..pi15
            step = 1 if j >= i else -1
            for k in range(i, j + step, step):
                name = f"{m.group('a')}{k:0{pad}d}"
                p = ports.get(name)
                if p is None:
                    raise PortError(f"port '{name}' (from '{item}') does not exist; ports: "
                                    f"{', '.join(ports)}")
                if p.width != 1:
                    raise PortError(f"'{item}': port '{name}' has {p.width} bits; a range of "
                                    "ports needs scalar ports")
                bits.append((name, 0))
            continue
        m = re.fullmatch(r"(?P<n>[^\[\]]+)(?:\[(?P<h>\d+)(?::(?P<l>\d+))?\])?", item)
        if not m:
            raise PortError(f"cannot parse bit-list item '{item}'; expected NAME, NAME[i], "
                            "NAME[h:l] or in0..in7")
        name = m.group("n").strip()
        p = ports.get(name)
        if p is None:
            raise PortError(f"port '{name}' does not exist; ports: {', '.join(ports)}")
        if m.group("h") is None:
            bits.extend(_whole(p))
        elif m.group("l") is None:
            bits.append((name, p.position(int(m.group("h")))))
        else:
            h, l_ = int(m.group("h")), int(m.group("l"))
            for idx in range(min(h, l_), max(h, l_) + 1):
                bits.append((name, p.position(idx)))
    if not bits:
        raise PortError(f"empty bit list '{spec}'")
    return tuple(bits)


_EVO_SIGNED = re.compile(r"^mul\d+(?:x\d+)?s_", re.I)
_EVO_UNSIGNED = re.compile(r"^mul\d+(?:x\d+)?u_", re.I)


def detect_ports(ports: dict[str, PortInfo], *, module: str = "", convention: str = "auto",
                 a_bits: int | None = None, w_bits: int | None = None,
                 explicit: dict[str, str] | None = None) -> PortMap:
    """Find A, B and the product among ``ports`` (declaration order) by ``convention``."""
    if convention not in CONVENTIONS:
        raise PortError(f"unknown port convention '{convention}'; expected one of {', '.join(CONVENTIONS)}")
    if explicit:
        convention = "explicit"
    ins = [p for p in ports.values() if p.direction == "input"]
    outs = [p for p in ports.values() if p.direction == "output"]
    inouts = [p for p in ports.values() if p.direction not in ("input", "output")]
    what = f"module '{module}'" if module else "the module"
    if inouts:
        raise PortError(f"{what} has inout ports {[p.name for p in inouts]}; a multiplier has "
                        "only inputs and outputs")
    listing = (f"inputs {', '.join(f'{p.name}[{p.width}]' for p in ins) or 'none'}; outputs "
               f"{', '.join(f'{p.name}[{p.width}]' for p in outs) or 'none'}")
    candidates = [convention] if convention != "auto" else ["subxpat", "evoapprox", "plain", "positional"]
    result = None
    for conv in candidates:
        result = _try(conv, ports, ins, outs, a_bits, w_bits, explicit or {}, what)
        if result is not None:
            break
    if result is None:
        if convention == "auto":
            raise PortError(
                f"cannot tell operand A, operand B and the product apart in {what} ({listing}); "
                "expected SubXPAT ports in0../out0.., EvoApproxLib A/B/O, plain a/b/y, or two "
                "inputs and one output; pass --ports explicit with --port-a/--port-b/--port-y")
        raise PortError(f"{what} does not follow the '{convention}' port convention ({listing})")
    a, b, y, notes = result
    signed_hint = None
    flags = {ports[n].signed for n, _ in a + b}
    if flags == {True}:
        signed_hint = True
    elif _EVO_SIGNED.match(module or ""):
        signed_hint = True
        notes = notes + (f"signed from the EvoApproxLib name '{module}'",)
    elif _EVO_UNSIGNED.match(module or ""):
        signed_hint = False
    pm = PortMap(a, b, y, conv, signed_hint, notes)
    _check_widths(pm, what, a_bits, w_bits)
    return pm


def _try(conv, ports, ins, outs, a_bits, w_bits, explicit, what):
    if conv == "subxpat":
        ni = _numbered(ins, r"in(?P<n>\d+)")
        no = _numbered(outs, r"(?:a_)?out(?P<n>\d+)") if outs else None
        if not ni or not no or len(ni) != len(ins) or len(no) != len(outs):
            return None
        if len({re.sub(r"\d+$", "", p.name) for _, p in no}) != 1:
            return None
        ab, wb = _split_ab(len(ni), a_bits, w_bits, what)
        inb = [(p.name, 0) for _, p in ni]
        return tuple(inb[:ab]), tuple(inb[ab:]), tuple((p.name, 0) for _, p in no), ()
    if conv in ("evoapprox", "plain"):
        na, nb, ny = ("A", "B", "O") if conv == "evoapprox" else ("a", "b", "y")
        if len(ins) != 2 or len(outs) != 1:
            return None
        if {p.name for p in ins} != {na, nb} or outs[0].name != ny:
            return None
        return _whole(ports[na]), _whole(ports[nb]), _whole(ports[ny]), ()
    if conv == "positional":
        if len(ins) != 2 or len(outs) != 1:
            return None
        note = (f"operands by position: A (activation) = first input '{ins[0].name}', "
                f"B (weight) = second input '{ins[1].name}'",)
        return _whole(ins[0]), _whole(ins[1]), _whole(outs[0]), note
    if conv == "explicit":
        missing = [k for k in ("a", "b", "y") if not explicit.get(k)]
        if missing:
            raise PortError("explicit port mapping needs --port-a, --port-b and --port-y "
                            f"(missing: {', '.join(missing)})")
        a = parse_bit_list(explicit["a"], ports)
        b = parse_bit_list(explicit["b"], ports)
        y = parse_bit_list(explicit["y"], ports)
        for label, bits, want in (("A", a, "input"), ("B", b, "input"), ("Y", y, "output")):
            wrong = sorted({p for p, _ in bits if ports[p].direction != want})
            if wrong:
                raise PortError(f"explicit {label} bits use {wrong}, which are not {want}s")
        seen = set()
        for bit in a + b:
            if bit in seen:
                raise PortError(f"input bit {bit[0]}[{bit[1]}] is mapped twice")
            seen.add(bit)
        return a, b, y, ()
    return None


def _check_widths(pm: PortMap, what: str, a_bits: int | None, w_bits: int | None) -> None:
    ab, wb, ob = pm.a_bits, pm.w_bits, pm.out_bits
    if a_bits is not None and ab != a_bits:
        raise PortError(f"{what}: operand A has {ab} bits, expected {a_bits}")
    if w_bits is not None and wb != w_bits:
        raise PortError(f"{what}: operand B has {wb} bits, expected {w_bits}")
    for label, n in (("A", ab), ("B", wb)):
        if not 1 <= n <= MAX_OPERAND_BITS:
            raise PortError(f"{what}: operand {label} has {n} bits; LUTs support 1..{MAX_OPERAND_BITS}")
    if ob != ab + wb:
        raise PortError(
            f"{what} is not a {ab}x{wb}-bit multiplier: its product has {ob} bits, expected "
            f"{ab + wb} (A {ab} + B {wb}); check the port convention or map the ports explicitly")
