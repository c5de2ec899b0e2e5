"""Built-in functional multipliers: exact, truncated, broken-array (BAM), DRUM-k, Mitchell.

Each family is an *unsigned core* ``core(a, w, a_bits, w_bits, **params)`` evaluated on whole
numpy grids of non-negative operands. A signed multiplier of the same family is the
sign-magnitude wrapper ``sign(a)*sign(w)*core(|a|, |w|)`` (the magnitude of -2^(b-1) still fits
the b-bit unsigned core; a core that rounds it up, like DRUM-2, can overflow the signed output
and is refused), which is also how ``axcnn.hw`` builds the signed circuits.

Names (usable as ``builtin:NAME`` wherever a LUT is accepted, optionally with ``@8u``, ``@4s``
or ``@8x4u`` to fix bit widths and signedness):

============  ================================================================================
``exact``     a*w
``truncK``    drop the K least-significant partial-product columns: sum of a_i*w_j*2^(i+j)
              over i+j >= K (no compensation)
``bamH_V``    broken-array multiplier (Mahdiani et al. 2010): drop the H least-significant
              rows (partial products a_i*w_j with j < H) and the V least-significant columns
              (i+j < V)
``drumK``     DRUM-K (Hashemi et al. 2015): each operand longer than K bits keeps the K bits from
              its leading one, with the lowest kept bit forced to 1; the K x K product is
              shifted back
``mitchell``  Mitchell's logarithmic multiplier (1962) with an exact fraction: for
              a = 2^k1 + r1, w = 2^k2 + r2 and s = r1*2^k2 + r2*2^k1, the result is
              2^(k1+k2) + s if s < 2^(k1+k2), else 2*s; 0 when an operand is 0
============  ================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import LUTError
from .core import MAX_BITS, MIN_BITS, MultiplierLUT, operand_values, output_range


def _bit(x: np.ndarray, i: int) -> np.ndarray:
    return (x >> i) & 1


def _exact(a, w, a_bits, w_bits):
    return a * w


def _partial_products(a, w, a_bits, w_bits, keep: Callable[[int, int], bool]):
    out = np.zeros(np.broadcast(a, w).shape, dtype=np.int64)
    for i in range(a_bits):
        ai = _bit(a, i)
        for j in range(w_bits):
            if keep(i, j):
                out += (ai * _bit(w, j)) << (i + j)
    return out


def _trunc(a, w, a_bits, w_bits, k):
    return _partial_products(a, w, a_bits, w_bits, lambda i, j: i + j >= k)


def _bam(a, w, a_bits, w_bits, h, v):
    return _partial_products(a, w, a_bits, w_bits, lambda i, j: j >= h and i + j >= v)


def _leading_one(x: np.ndarray) -> np.ndarray:
    """floor(log2 x) for x > 0 (and -1 for x == 0)."""
    out = np.full(x.shape, -1, dtype=np.int64)
    for i in range(16):
        out = np.where((x >> i) > 0, i, out)
    return out


def _drum_operand(x: np.ndarray, k: int) -> np.ndarray:
    lead = _leading_one(x)
    t = np.maximum(lead + 1 - k, 0)
    frag = x >> t
    frag = np.where(t > 0, frag | 1, frag)
    return frag << t


def _drum(a, w, a_bits, w_bits, k):
    return _drum_operand(a, k) * _drum_operand(w, k)


def _mitchell(a, w, a_bits, w_bits):
    k1 = _leading_one(a)
    k2 = _leading_one(w)
    nz = (a > 0) & (w > 0)
    k1c = np.maximum(k1, 0)
    k2c = np.maximum(k2, 0)
    r1 = a - (1 << k1c)
    r2 = w - (1 << k2c)
    s = (r1 << k2c) + (r2 << k1c)
    base = np.int64(1) << (k1c + k2c)
    out = np.where(s < base, base + s, 2 * s)
    return np.where(nz, out, 0)


@dataclass(frozen=True)
class Family:
    """A built-in multiplier family: name pattern, parameter names and its unsigned core."""

    name: str
    pattern: str
    params: tuple[str, ...]
    core: Callable
    summary: str
    example: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("exact", r"exact", (), _exact, "exact product", "exact"),
        Family("trunc", r"trunc(?P<k>\d+)", ("k",), _trunc,
               "drop the k least-significant partial-product columns", "trunc6"),
        Family("bam", r"bam(?P<h>\d+)_(?P<v>\d+)", ("h", "v"), _bam,
               "broken-array: drop h LSB rows and v LSB columns of partial products", "bam2_6"),
        Family("drum", r"drum(?P<k>\d+)", ("k",), _drum,
               "DRUM-k dynamic-range unbiased multiplier", "drum4"),
        Family("mitchell", r"mitchell", (), _mitchell,
               "Mitchell logarithmic multiplier (exact fraction)", "mitchell"),
    )
}


@dataclass(frozen=True)
class BuiltinSpec:
    """A parsed ``builtin:`` name: family, its parameters and the operand format."""

    family: str
    params: dict[str, int] = field(default_factory=dict)
    a_bits: int = 8
    w_bits: int = 8
    signed: bool = False

    @property
    def base_name(self) -> str:
        fam = FAMILIES[self.family]
        if not fam.params:
            return fam.name
        if fam.name == "bam":
            return f"bam{self.params['h']}_{self.params['v']}"
        return fam.name + "".join(str(self.params[p]) for p in fam.params)

    @property
    def name(self) -> str:
        bits = str(self.a_bits) if self.a_bits == self.w_bits else f"{self.a_bits}x{self.w_bits}"
        return f"{self.base_name}_{bits}{'s' if self.signed else 'u'}"

    @property
    def spec(self) -> str:
        bits = str(self.a_bits) if self.a_bits == self.w_bits else f"{self.a_bits}x{self.w_bits}"
        return f"builtin:{self.base_name}@{bits}{'s' if self.signed else 'u'}"


_SUFFIX = re.compile(r"^(?P<a>\d+)(?:x(?P<w>\d+))?(?P<s>[us])$")


def parse_builtin(name: str, bits: int | None = None, signed: bool | None = None,
                  w_bits: int | None = None) -> BuiltinSpec:
    """Parse ``NAME[@BITS(u|s)]`` (with or without the ``builtin:`` prefix).

    A suffix such as ``@4s`` fixes bit widths and signedness; otherwise ``bits`` (default 8),
    ``w_bits`` (default ``bits``) and ``signed`` (default False) apply. A suffix that
    contradicts an explicit ``bits``/``signed`` is an error.
    """
    text = name.removeprefix("builtin:").strip()
    suffix = None
    if "@" in text:
        text, suffix = text.split("@", 1)
    a_bits = bits if bits is not None else 8
    wb = w_bits if w_bits is not None else a_bits
    sgn = bool(signed) if signed is not None else False
    if suffix is not None:
        m = _SUFFIX.match(suffix)
        if not m:
            raise LUTError(
                f"bad bit-width suffix '@{suffix}' in '{name}'; expected e.g. @8u, @4s or @8x4u"
            )
        sa = int(m["a"])
        sw = int(m["w"]) if m["w"] else sa
        ss = m["s"] == "s"
        if (bits is not None and bits != sa) or (signed is not None and bool(signed) != ss):
            raise LUTError(
                f"'{name}' says {sa}-bit {'signed' if ss else 'unsigned'} but "
                f"{bits}-bit {'signed' if signed else 'unsigned'} was requested"
            )
        a_bits, wb, sgn = sa, sw, ss
    for b in (a_bits, wb):
        if not MIN_BITS + 1 <= b <= MAX_BITS:
            raise LUTError(f"built-in multipliers support 2..8 bits, got {b} in '{name}'")
    for fam in FAMILIES.values():
        m = re.fullmatch(fam.pattern, text)
        if m:
            params = {p: int(m[p]) for p in fam.params}
            _check_params(fam, params, a_bits, wb, name)
            return BuiltinSpec(fam.name, params, a_bits, wb, sgn)
    known = ", ".join(f.example for f in FAMILIES.values())
    raise LUTError(
        f"unknown built-in multiplier '{name}'; expected one of the families "
        f"{', '.join(FAMILIES)} (e.g. {known}); run 'axcnn lut list'"
    )


def _check_params(fam: Family, params: dict[str, int], a_bits: int, w_bits: int, name: str):
    out_bits = a_bits + w_bits
    if fam.name == "trunc" and not 0 <= params["k"] < out_bits:
        raise LUTError(f"'{name}': trunc k must be in 0..{out_bits - 1}, got {params['k']}")
    if fam.name == "bam":
        if not 0 <= params["h"] < w_bits:
            raise LUTError(f"'{name}': bam h (rows dropped) must be in 0..{w_bits - 1}")
        if not 0 <= params["v"] < out_bits:
            raise LUTError(f"'{name}': bam v (columns dropped) must be in 0..{out_bits - 1}")
    if fam.name == "drum" and not 2 <= params["k"] <= max(a_bits, w_bits):
        raise LUTError(f"'{name}': drum k must be in 2..{max(a_bits, w_bits)}, got {params['k']}")


def _check_signed_fit(spec: "BuiltinSpec", table: np.ndarray, name: str) -> None:
    """A signed sign-magnitude multiplier whose core rounds |-2^(b-1)| up can overflow."""
    lo, hi = output_range(spec.a_bits, spec.w_bits, spec.signed)
    if spec.signed and (table.min() < lo or table.max() > hi):
        raise LUTError(
            f"'{name}' cannot be built signed at {spec.a_bits}x{spec.w_bits} bits: its core rounds the "
            f"magnitude of the most negative operand up and the product ({int(np.abs(table).max())}) "
            f"overflows the {spec.a_bits + spec.w_bits}-bit signed output; use a larger parameter "
            f"(e.g. drum3) or unsigned operands"
        )


def builtin_table(spec: BuiltinSpec) -> np.ndarray:
    """The int64 table of a built-in multiplier in the standard orientation."""
    fam = FAMILIES[spec.family]
    a = operand_values(spec.a_bits, spec.signed)[:, None]
    w = operand_values(spec.w_bits, spec.signed)[None, :]
    core = fam.core(np.abs(a), np.abs(w), spec.a_bits, spec.w_bits, **spec.params)
    core = np.broadcast_to(core, (a.shape[0], w.shape[1])).astype(np.int64)
    if spec.signed:
        core = np.sign(a) * np.sign(w) * core
    return core


def builtin(name: str, bits: int | None = None, signed: bool | None = None,
            w_bits: int | None = None) -> MultiplierLUT:
    """A built-in multiplier as a ``MultiplierLUT`` (see the module docstring for names)."""
    spec = parse_builtin(name, bits, signed, w_bits)
    table = builtin_table(spec)
    _check_signed_fit(spec, table, name)
    return MultiplierLUT(
        table,
        signed=spec.signed,
        name=spec.name,
        provenance={"source": "builtin", "spec": spec.spec, "family": spec.family,
                    "params": dict(spec.params)},
    )


def list_builtins() -> list[Family]:
    return list(FAMILIES.values())


def family_grid(bits: int = 8) -> list[str]:
    """A default parameter grid over all families for ``bits``-bit operands (names only)."""
    names = ["exact"]
    names += [f"trunc{k}" for k in range(2, bits + 2)]
    names += [f"bam{h}_{v}" for h in range(1, max(2, bits // 2)) for v in range(bits - 2, bits + 2)]
    names += [f"drum{k}" for k in range(3, bits)]
    names += ["mitchell"]
    return names
