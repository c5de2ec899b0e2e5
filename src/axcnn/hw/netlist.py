"""Gate netlists from yosys and their bit-parallel simulation with numpy.

:func:`elaborate` runs yosys on Verilog (``proc; flatten; techmap; opt``) and writes a flat
netlist of yosys' simple gates (``$_AND_``, ``$_XOR_``, ``$_MUX_``, ...) as JSON;
:meth:`Netlist.from_json` reads such a JSON file (also the liberty-mapped netlists of
:mod:`axcnn.hw.synth`, whose cells are evaluated with their liberty ``function``) into a
topologically ordered gate list; :meth:`Netlist.simulate` evaluates it on packed ``uint64``
words, 64 input vectors per word, so all 65,536 operand pairs of an 8x8 multiplier take
1,024 words per net.

Net ids: 0 is constant 0, 1 is constant 1, the rest are the netlist's nets. Undriven bits and
yosys ``x``/``z`` constants read as 0 (listed in ``Netlist.warnings``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError, ToolError
from .ports import PortInfo

log = logging.getLogger(__name__)

ONES = np.uint64(0xFFFFFFFFFFFFFFFF)

#: yosys internal gate cells -> (input pins in order, liberty-style function of output Y)
YOSYS_GATES: dict[str, tuple[tuple[str, ...], str]] = {
    "$_BUF_": (("A",), "A"),
    "$_NOT_": (("A",), "!A"),
    "$_AND_": (("A", "B"), "A&B"),
    "$_NAND_": (("A", "B"), "!(A&B)"),
    "$_OR_": (("A", "B"), "A|B"),
    "$_NOR_": (("A", "B"), "!(A|B)"),
    "$_XOR_": (("A", "B"), "A^B"),
    "$_XNOR_": (("A", "B"), "!(A^B)"),
    "$_ANDNOT_": (("A", "B"), "A&!B"),
    "$_ORNOT_": (("A", "B"), "A|!B"),
    "$_MUX_": (("A", "B", "S"), "(A&!S)|(B&S)"),
    "$_NMUX_": (("A", "B", "S"), "!((A&!S)|(B&S))"),
    "$_AOI3_": (("A", "B", "C"), "!((A&B)|C)"),
    "$_OAI3_": (("A", "B", "C"), "!((A|B)&C)"),
    "$_AOI4_": (("A", "B", "C", "D"), "!((A&B)|(C&D))"),
    "$_OAI4_": (("A", "B", "C", "D"), "!((A|B)&(C|D))"),
}

SEQUENTIAL_PREFIXES = ("$_DFF", "$_SDFF", "$_DLATCH", "$_SR_", "$_ALDFF", "$_DFFSR", "$_DFFE",
                       "$_SDFFE", "$_SDFFCE", "$_DLATCHSR", "$dff", "$adff", "$dlatch", "$sr",
                       "$mem", "$fsm")


class CircuitError(ConfigError):
    """Verilog that does not elaborate, or is not a combinational multiplier (exit 2)."""


@dataclass
class Gate:
    """One output of one cell: ``nets[out] = fn(*nets[ins])``."""

    cell: str          # instance name
    type: str          # cell type ($_AND_, NAND2X1, ...)
    fn: Callable
    ins: tuple[int, ...]
    out: int
    in_pins: tuple[str, ...]
    out_pin: str


@dataclass
class Netlist:
    """A flat combinational netlist in topological order."""

    module: str
    ports: dict[str, PortInfo]
    n_nets: int
    gates: list[Gate]
    cells: dict[str, dict]                  # instance -> {"type", "pins": {pin: net}}
    net_names: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_json(cls, source: str | os.PathLike | dict, *, top: str | None = None,
                  library=None) -> "Netlist":
        """Read a yosys ``write_json`` netlist; ``library`` (a liberty ``Library``) supplies
        the functions and pin directions of standard cells."""
        if isinstance(source, dict):
            data = source
            where = "<json>"
        else:
            where = str(source)
            try:
                data = json.loads(Path(source).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise CircuitError(f"cannot read yosys netlist {source}: {exc}") from None
        modules = data.get("modules", {})
        if not modules:
            raise CircuitError(f"yosys netlist {where} holds no module")
        if top is None:
            tops = [n for n, m in modules.items()
                    if str(m.get("attributes", {}).get("top", "0")).strip("0") != ""]
            top = tops[0] if tops else (next(iter(modules)) if len(modules) == 1 else None)
            if top is None:
                raise CircuitError(f"yosys netlist {where} has modules {list(modules)} and no top; "
                                   "pass --top NAME")
        if top not in modules:
            raise CircuitError(f"module '{top}' is not in {where}; it has {list(modules)}")
        mod = modules[top]
        ids: dict = {}

        def nid(bit) -> int:
            if isinstance(bit, str):
                if bit == "1":
                    return 1
                return 0   # '0', 'x', 'z'
            if bit not in ids:
                ids[bit] = len(ids) + 2
            return ids[bit]

        warnings: list[str] = []
        net_names: dict[int, str] = {}
        ports: dict[str, PortInfo] = {}
        for name, p in mod.get("ports", {}).items():
            bits = tuple(nid(b) for b in p["bits"])
            xs = [i for i, b in enumerate(p["bits"]) if b in ("x", "z")]
            if xs:
                warnings.append(f"port {name} bits {xs} are undefined (x/z); read as 0")
            nn = mod.get("netnames", {}).get(name, {})
            ports[name] = PortInfo(name, p["direction"], bits, bool(p.get("signed", 0)),
                                   int(nn.get("offset", p.get("offset", 0)) or 0),
                                   bool(nn.get("upto", p.get("upto", 0))))
            for i, b in enumerate(bits):
                if b > 1:
                    net_names.setdefault(b, f"{name}[{i}]" if len(bits) > 1 else name)
        for name, nn in mod.get("netnames", {}).items():
            if nn.get("hide_name"):
                continue
            for i, b in enumerate(nn.get("bits", [])):
                if not isinstance(b, str):
                    net_names.setdefault(nid(b), f"{name}[{i}]" if len(nn["bits"]) > 1 else name)

        gates: list[Gate] = []
        cells: dict[str, dict] = {}
        from .liberty import compile_function

        for cname, c in mod.get("cells", {}).items():
            ctype = c["type"]
            conns = c.get("connections", {})
            if ctype in YOSYS_GATES:
                in_pins, func = YOSYS_GATES[ctype]
                fn, _ = compile_function(func, in_pins)
                outs = {"Y": func}
            elif ctype.startswith(SEQUENTIAL_PREFIXES):
                raise CircuitError(f"cell {cname} is a {ctype}: the design is sequential or has "
                                   "memories; a multiplier circuit must be combinational")
            elif library is not None and ctype in library.cells:
                lc = library.cells[ctype]
                if lc.sequential:
                    raise CircuitError(f"cell {cname} ({ctype}) is sequential; a multiplier "
                                       "circuit must be combinational")
                outs = {}
                for pin in lc.outputs:
                    f = lc.pins[pin].function
                    if f is None:
                        raise CircuitError(f"cell {ctype} output {pin} has no liberty function; "
                                           "it cannot be simulated")
                    outs[pin] = f
                in_pins = tuple(lc.inputs)
            else:
                hint = ("" if library is not None else
                        " (a standard cell? pass the liberty file that defines it)")
                if ctype.startswith("$"):
                    hint = " (not a simple gate: the netlist was not techmapped)"
                raise CircuitError(f"cell {cname} has type {ctype}, which cannot be simulated{hint}")
            pins = {pin: nid(v[0]) for pin, v in conns.items() if len(v) == 1}
            for pin, v in conns.items():
                if len(v) != 1:
                    raise CircuitError(f"cell {cname} ({ctype}) pin {pin} has {len(v)} bits; "
                                       "expected single-bit gate pins")
            cells[cname] = {"type": ctype, "pins": pins}
            for out_pin, func in outs.items():
                if out_pin not in pins:
                    continue  # unconnected output
                fn, order = compile_function(func, in_pins)
                missing = [p for p in order if p not in pins]
                if missing:
                    warnings.append(f"cell {cname} ({ctype}) inputs {missing} unconnected; read as 0")
                ins = tuple(pins.get(p, 0) for p in order)
                gates.append(Gate(cname, ctype, fn, ins, pins[out_pin], tuple(order), out_pin))
        n_nets = len(ids) + 2
        nl = cls(top, ports, n_nets, [], cells, net_names, warnings)
        nl.gates = nl._toposort(gates)
        nl._check_drivers()
        return nl

    def _toposort(self, gates: list[Gate]) -> list[Gate]:
        driver: dict[int, int] = {}
        for gi, g in enumerate(gates):
            if g.out in (0, 1):
                raise CircuitError(f"cell {g.cell} drives a constant net")
            if g.out in driver:
                other = gates[driver[g.out]].cell
                raise CircuitError(f"net {self.net_names.get(g.out, g.out)} is driven by both "
                                   f"{other} and {g.cell}")
            driver[g.out] = gi
        for p in self.ports.values():
            if p.direction == "input":
                for b in p.bits:
                    if b in driver:
                        raise CircuitError(f"input {p.name} is driven by cell {gates[driver[b]].cell}")
        indeg = [0] * len(gates)
        users: dict[int, list[int]] = {}
        for gi, g in enumerate(gates):
            for n in set(g.ins):
                if n in driver:
                    indeg[gi] += 1
                    users.setdefault(driver[n], []).append(gi)
        order = [gi for gi, d in enumerate(indeg) if d == 0]
        k = 0
        while k < len(order):
            gi = order[k]
            k += 1
            for u in users.get(gi, ()):
                indeg[u] -= 1
                if indeg[u] == 0:
                    order.append(u)
        if len(order) != len(gates):
            stuck = [gates[gi].cell for gi, d in enumerate(indeg) if d > 0][:5]
            raise CircuitError(f"the netlist has a combinational loop (through cells {stuck}); "
                               "a multiplier must be loop-free")
        return [gates[gi] for gi in order]

    def _check_drivers(self) -> None:
        driven = {g.out for g in self.gates}
        inputs = {b for p in self.ports.values() if p.direction == "input" for b in p.bits}
        floating = set()
        for g in self.gates:
            for n in g.ins:
                if n > 1 and n not in driven and n not in inputs:
                    floating.add(n)
        for p in self.ports.values():
            if p.direction == "output":
                for b in p.bits:
                    if b > 1 and b not in driven and b not in inputs:
                        floating.add(b)
        if floating:
            names = sorted(self.net_names.get(n, f"net{n}") for n in floating)
            self.warnings.append(f"{len(floating)} undriven nets read as 0: {names[:8]}")

    # ---- queries ------------------------------------------------------------------------
    @property
    def inputs(self) -> list[PortInfo]:
        return [p for p in self.ports.values() if p.direction == "input"]

    @property
    def outputs(self) -> list[PortInfo]:
        return [p for p in self.ports.values() if p.direction == "output"]

    def cell_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.cells.values():
            counts[c["type"]] = counts.get(c["type"], 0) + 1
        return dict(sorted(counts.items()))

    def depth(self) -> int:
        """Logic depth in gates (longest input-to-output path)."""
        level = {}
        for g in self.gates:
            level[g.out] = 1 + max((level.get(n, 0) for n in g.ins), default=0)
        return max(level.values(), default=0)

    def bit(self, port: str, pos: int) -> int:
        return self.ports[port].bits[pos]

    # ---- simulation ---------------------------------------------------------------------
    def simulate(self, inputs: dict[int, np.ndarray], n_words: int) -> np.ndarray:
        """Evaluate all nets; ``inputs`` maps input net ids to ``(n_words,)`` uint64 arrays.

        Returns a ``(n_nets, n_words)`` uint64 array. Unlisted inputs read as 0.
        """
        values = np.zeros((self.n_nets, n_words), dtype=np.uint64)
        values[1] = ONES
        for n, w in inputs.items():
            if n > 1:
                values[n] = w
        for g in self.gates:
            values[g.out] = g.fn(*[values[i] for i in g.ins])
        return values

    def settle_unit_delay(self, values: np.ndarray, new_inputs: dict[int, np.ndarray],
                          max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit-delay (transport) simulation from settled ``values`` after inputs change.

        Every gate switches one time step after its inputs. Returns the settled values and
        per-net counts of rising and falling transitions summed over all steps (glitches
        included), each as an array of per-net counts per word lane (caller pops bits).
        """
        cur = values.copy()
        for n, w in new_inputs.items():
            if n > 1:
                cur[n] = w
        rises = np.zeros(self.n_nets, dtype=np.int64)
        falls = np.zeros(self.n_nets, dtype=np.int64)
        # input transitions happen at step 0
        d = values ^ cur
        rises += popcount_rows(d & cur)
        falls += popcount_rows(d & values)
        limit = max_steps if max_steps is not None else len(self.gates) + 1
        for _ in range(limit):
            nxt = cur.copy()
            for g in self.gates:
                nxt[g.out] = g.fn(*[cur[i] for i in g.ins])
            d = nxt ^ cur
            if not d.any():
                return cur, rises, falls
            rises += popcount_rows(d & nxt)
            falls += popcount_rows(d & cur)
            cur = nxt
        raise CircuitError("unit-delay simulation did not settle (oscillating netlist?)")


# --------------------------------------------------------------------------------------
# Bit packing helpers
# --------------------------------------------------------------------------------------

def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a 1-D 0/1 array into uint64 words (element t -> bit t % 64 of word t // 64)."""
    b = np.asarray(bits, dtype=bool).reshape(-1)
    n_words = max(1, -(-b.size // 64))
    padded = np.zeros(n_words * 64, dtype=bool)
    padded[: b.size] = b
    return np.packbits(padded, bitorder="little").view("<u8").astype(np.uint64)


def unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` bits as a uint8 array."""
    w = np.ascontiguousarray(words, dtype="<u8")
    return np.unpackbits(w.view(np.uint8), bitorder="little")[:n]


if hasattr(np, "bitwise_count"):
    def popcount_rows(words: np.ndarray) -> np.ndarray:
        """Number of set bits per row of a 2-D uint64 array (int64)."""
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
else:  # numpy < 2.0
    _POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)

    def popcount_rows(words: np.ndarray) -> np.ndarray:
        w = np.ascontiguousarray(words, dtype="<u8")
        return _POP8[w.view(np.uint8)].reshape(*w.shape[:-1], -1).sum(axis=-1)


def tail_mask(n_bits: int, n_words: int) -> np.ndarray:
    """Words with the first ``n_bits`` bits set (to mask padding lanes)."""
    m = np.zeros(n_words, dtype=np.uint64)
    full = n_bits // 64
    m[:full] = ONES
    if n_bits % 64:
        m[full] = np.uint64((1 << (n_bits % 64)) - 1)
    return m


# --------------------------------------------------------------------------------------
# yosys elaboration
# --------------------------------------------------------------------------------------

_YOSYS_ERROR = re.compile(r"^(?:.*?)(ERROR:.*)$", re.M)


def yosys_error_message(exc: ToolError) -> str | None:
    """The ``ERROR: ...`` line of a failed yosys run (an input problem), if there is one."""
    text = getattr(exc, "output", "") or str(exc)
    m = _YOSYS_ERROR.search(text)
    return m.group(1).strip() if m else None


def run_yosys_script(script: str, workdir: Path, *, timeout: float | None = None,
                     name: str = "yosys", verilog: Sequence[Path] = ()):
    """Write ``<name>.ys`` into ``workdir`` and run yosys on it.

    A yosys ``ERROR:`` (Verilog that does not parse or elaborate) becomes a CircuitError
    (exit 2) with yosys' message; other failures stay ToolErrors.
    """
    from ..toolchain import ToolFailed, ToolTimeout, run_tool

    workdir.mkdir(parents=True, exist_ok=True)
    ys = workdir / f"{name}.ys"
    ys.write_text(script)
    try:
        return run_tool("yosys", ["-q", "-s", ys.name, "-l", f"{name}.out"], cwd=workdir,
                        timeout=timeout, log_name=name)
    except ToolTimeout:
        raise
    except ToolFailed as exc:
        msg = yosys_error_message(exc)
        if msg:
            files = ", ".join(str(v) for v in verilog) or "the design"
            raise CircuitError(f"yosys rejected {files}: {msg} (log: {exc.log_path})") from None
        raise


def _quote(path: Path | str) -> str:
    s = str(path)
    if re.search(r'[\s";]', s):
        return '"' + s.replace('"', '\\"') + '"'
    return s


def read_commands(verilog: Sequence[Path], defines: dict[str, str] | None = None) -> str:
    lines = []
    for v in verilog:
        opts = "".join(f" -D{k}={val}" if val else f" -D{k}" for k, val in (defines or {}).items())
        lines.append(f"read_verilog{opts} {_quote(Path(v).resolve())}")
    return "\n".join(lines)


def elaborate(verilog: str | os.PathLike | Sequence[str | os.PathLike], workdir: str | os.PathLike,
              *, top: str | None = None, timeout: float | None = None) -> Netlist:
    """Elaborate Verilog with yosys into a flat netlist of simple gates (``netlist.json``)."""
    files = [Path(verilog)] if isinstance(verilog, (str, os.PathLike)) else [Path(v) for v in verilog]
    for f in files:
        if not f.is_file():
            raise CircuitError(f"Verilog file '{f}' does not exist")
    workdir = Path(workdir)
    hier = f"hierarchy -check -top {top}" if top else "hierarchy -check -auto-top"
    script = "\n".join([
        "# axcnn: Verilog -> flat netlist of simple gates (for bit-parallel simulation)",
        read_commands(files),
        hier,
        "proc",
        "flatten",
        "opt_clean",
        "memory -nomap",
        "techmap",
        "opt -fast",
        "opt_clean -purge",
        "check",
        "stat",
        "write_json netlist.json",
        "",
    ])
    run_yosys_script(script, workdir, timeout=timeout, name="elaborate", verilog=files)
    return Netlist.from_json(workdir / "netlist.json")
