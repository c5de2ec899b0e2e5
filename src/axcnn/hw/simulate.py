"""Verilog multiplier -> LUT: exhaustive bit-parallel simulation, and an iverilog cross-check.

:func:`verilog_to_lut` elaborates a Verilog multiplier with yosys (:func:`~axcnn.hw.netlist.elaborate`),
finds its operand and product bits (:mod:`axcnn.hw.ports`) and evaluates all 2^(a+w) operand
pairs at once (:func:`netlist_table`). Row = operand A (activation), column = operand B
(weight); for signed circuits the operands are two's complement bit patterns and the table
index is value + 2^(b-1), the product is read as a two's complement number.

:func:`iverilog_check` simulates the original Verilog with Icarus Verilog on all or a
sample of operand pairs and compares with a LUT: an independent check of the elaboration
and of the numpy simulator.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..lut import MultiplierLUT
from .netlist import CircuitError, Netlist, elaborate, pack_bits, unpack_bits
from .ports import PortMap, detect_ports

log = logging.getLogger(__name__)


def all_pairs(a_bits: int, w_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Table indices (row, column) of every operand pair in row-major (LUT) order."""
    n = 1 << (a_bits + w_bits)
    k = np.arange(n, dtype=np.int64)
    return k >> w_bits, k & ((1 << w_bits) - 1)


def index_to_pattern(idx: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Table index -> operand bit pattern (two's complement for signed: index - 2^(b-1))."""
    idx = np.asarray(idx, dtype=np.int64)
    return idx ^ (1 << (bits - 1)) if signed else idx


def input_words(netlist: Netlist, portmap: PortMap, a_idx: np.ndarray, w_idx: np.ndarray,
                signed: bool) -> dict[int, np.ndarray]:
    """Packed input words for the operand pairs (a_idx[t], w_idx[t]) (LUT indices)."""
    pa = index_to_pattern(a_idx, portmap.a_bits, signed)
    pw = index_to_pattern(w_idx, portmap.w_bits, signed)
    words: dict[int, np.ndarray] = {}
    for bits, pat in ((portmap.a, pa), (portmap.b, pw)):
        for k, (port, pos) in enumerate(bits):
            net = netlist.bit(port, pos)
            if net > 1:
                words[net] = pack_bits((pat >> k) & 1)
    return words


def decode_outputs(netlist: Netlist, portmap: PortMap, values: np.ndarray, n: int,
                   signed: bool) -> np.ndarray:
    """The product of each of the ``n`` simulated vectors (int64)."""
    out = np.zeros(n, dtype=np.int64)
    for k, (port, pos) in enumerate(portmap.y):
        bits = unpack_bits(values[netlist.bit(port, pos)], n)
        out |= bits.astype(np.int64) << k
    if signed:
        ob = portmap.out_bits
        out = np.where(out >= (1 << (ob - 1)), out - (1 << ob), out)
    return out


def evaluate_pairs(netlist: Netlist, portmap: PortMap, a_idx: np.ndarray, w_idx: np.ndarray,
                   signed: bool) -> np.ndarray:
    """The circuit's output for operand pairs given as LUT indices."""
    n = int(np.asarray(a_idx).size)
    words = input_words(netlist, portmap, a_idx, w_idx, signed)
    n_words = max(1, -(-n // 64))
    values = netlist.simulate(words, n_words)
    return decode_outputs(netlist, portmap, values, n, signed)


def netlist_table(netlist: Netlist, portmap: PortMap, signed: bool) -> np.ndarray:
    """The full (2^a, 2^w) int64 table of a netlist (all operand pairs, bit-parallel)."""
    a_idx, w_idx = all_pairs(portmap.a_bits, portmap.w_bits)
    out = evaluate_pairs(netlist, portmap, a_idx, w_idx, signed)
    return out.reshape(1 << portmap.a_bits, 1 << portmap.w_bits)


@dataclass
class SimulationResult:
    """What :func:`verilog_to_lut` produced."""

    lut: MultiplierLUT
    netlist: Netlist
    portmap: PortMap
    signed: bool
    workdir: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def info(self) -> dict:
        return {"module": self.netlist.module, "a_bits": self.portmap.a_bits,
                "w_bits": self.portmap.w_bits, "signed": self.signed,
                "ports": self.portmap.describe(), "port_notes": list(self.portmap.notes),
                "gates": len(self.netlist.gates), "warnings": list(self.netlist.warnings),
                "seconds": dict(self.seconds), "workdir": str(self.workdir),
                "lut": self.lut.metadata()}


def file_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def resolve_signed(portmap: PortMap, signed: bool | None) -> bool:
    if signed is not None:
        if portmap.signed_hint is not None and portmap.signed_hint != bool(signed):
            log.warning("the circuit's ports suggest %s operands but %s was requested; using %s",
                        "signed" if portmap.signed_hint else "unsigned",
                        "signed" if signed else "unsigned", "signed" if signed else "unsigned")
        return bool(signed)
    return bool(portmap.signed_hint)


def verilog_to_lut(verilog: str | os.PathLike | Sequence[str | os.PathLike], *,
                   workdir: str | os.PathLike, signed: bool | None = None,
                   convention: str = "auto", explicit: dict[str, str] | None = None,
                   a_bits: int | None = None, w_bits: int | None = None,
                   top: str | None = None, name: str | None = None,
                   timeout: float | None = None) -> SimulationResult:
    """Elaborate ``verilog`` with yosys and simulate every operand pair into a LUT.

    ``signed`` None: signed if the operand ports are declared ``signed`` or the module has an
    EvoApproxLib signed name (``mul8s_*``), else unsigned. The yosys script, log and netlist
    stay in ``workdir``.
    """
    from ..toolchain import tool_version

    files = [Path(verilog)] if isinstance(verilog, (str, os.PathLike)) else [Path(v) for v in verilog]
    workdir = Path(workdir)
    t0 = time.perf_counter()
    netlist = elaborate(files, workdir, top=top, timeout=timeout)
    t1 = time.perf_counter()
    portmap = detect_ports(netlist.ports, module=netlist.module, convention=convention,
                           a_bits=a_bits, w_bits=w_bits, explicit=explicit)
    is_signed = resolve_signed(portmap, signed)
    table = netlist_table(netlist, portmap, is_signed)
    t2 = time.perf_counter()
    for w in netlist.warnings:
        log.warning("%s: %s", files[0].name, w)
    prov = {"source": "circuit", "verilog": [str(f.resolve()) for f in files],
            "verilog_sha256": file_digest(files), "module": netlist.module,
            "ports": portmap.convention, "yosys": tool_version("yosys")}
    try:
        lut = MultiplierLUT(table, signed=is_signed, name=name or files[0].stem, provenance=prov)
    except Exception as exc:  # LUTError: values outside the product range
        raise CircuitError(f"{files[0]}: the simulated table is not a valid "
                           f"{'signed' if is_signed else 'unsigned'} LUT: {exc}") from None
    return SimulationResult(lut, netlist, portmap, is_signed, workdir,
                            {"elaborate": t1 - t0, "simulate": t2 - t1})


# --------------------------------------------------------------------------------------
# iverilog cross-check
# --------------------------------------------------------------------------------------

def _ident(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) else f"\\{name} "


def sample_pairs(a_bits: int, w_bits: int, samples: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All pairs if there are at most ``samples`` (or samples is None), else a seeded sample
    that always includes the corners (0, 1, the extremes)."""
    n = 1 << (a_bits + w_bits)
    if samples is None or samples >= n:
        return all_pairs(a_bits, w_bits)
    rng = np.random.default_rng(seed)
    ra, rw = 1 << a_bits, 1 << w_bits
    corners_a = np.array(sorted({0, 1, ra // 2 - 1, ra // 2, ra // 2 + 1, ra - 1}), dtype=np.int64)
    corners_w = np.array(sorted({0, 1, rw // 2 - 1, rw // 2, rw // 2 + 1, rw - 1}), dtype=np.int64)
    ca, cw = np.meshgrid(corners_a, corners_w, indexing="ij")
    a = np.concatenate([ca.reshape(-1), rng.integers(0, ra, samples)])
    w = np.concatenate([cw.reshape(-1), rng.integers(0, rw, samples)])
    return a[:samples], w[:samples]


def testbench(module: str, ports: dict, portmap: PortMap, n: int) -> str:
    """A Verilog testbench that applies vectors from a.hex/b.hex and prints the product bits."""
    ab, wb, ob = portmap.a_bits, portmap.w_bits, portmap.out_bits
    src: dict[tuple[str, int], str] = {}
    for k, bit in enumerate(portmap.a):
        src[bit] = f"va[{k}]"
    for k, bit in enumerate(portmap.b):
        src[bit] = f"vb[{k}]"
    lines = ["`timescale 1ns/1ps", "module axcnn_tb;",
             f"  reg [{ab - 1}:0] va; reg [{wb - 1}:0] vb;",
             f"  reg [{ab - 1}:0] mem_a [0:{n - 1}];", f"  reg [{wb - 1}:0] mem_b [0:{n - 1}];",
             f"  wire [{ob - 1}:0] vy;", "  integer i;"]
    conns = []
    for name, p in ports.items():
        if p.direction == "input":
            items = [src.get((name, pos), "1'b0") for pos in reversed(range(p.width))]
            conns.append(f".{_ident(name)}({{{', '.join(items)}}})")
        else:
            lines.append(f"  wire [{p.width - 1}:0] o_{len(conns)};")
            conns.append(f".{_ident(name)}(o_{len(conns)})")
    out_wire = {name: f"o_{i}" for i, name in enumerate(ports) if ports[name].direction != "input"}
    for k, (port, pos) in enumerate(portmap.y):
        lines.append(f"  assign vy[{k}] = {out_wire[port]}[{pos}];")
    lines.append(f"  {_ident(module)} uut ({', '.join(conns)});")
    lines += ["  initial begin",
              '    $readmemh("a.hex", mem_a);', '    $readmemh("b.hex", mem_b);',
              f"    for (i = 0; i < {n}; i = i + 1) begin",
              "      va = mem_a[i]; vb = mem_b[i];",
              '      #1 $display("%0d %b", i, vy);',
              "    end", "    $finish;", "  end", "endmodule", ""]
    return "\n".join(lines)


def iverilog_check(verilog: str | os.PathLike | Sequence[str | os.PathLike], lut: MultiplierLUT,
                   portmap: PortMap, module: str, ports: dict, *, workdir: str | os.PathLike,
                   samples: int | None = 4096, seed: int = 0, timeout: float | None = None,
                   extra_sources: Sequence[str | os.PathLike] = ()) -> dict:
    """Simulate ``verilog`` with iverilog on operand pairs and compare with ``lut``.

    Returns ``{"checked", "mismatches", "examples", "seconds"}``; ``examples`` lists up to 10
    differing pairs as (a_value, w_value, lut, iverilog).
    """
    from ..toolchain import run_tool

    files = [Path(verilog)] if isinstance(verilog, (str, os.PathLike)) else [Path(v) for v in verilog]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    a_idx, w_idx = sample_pairs(portmap.a_bits, portmap.w_bits, samples, seed)
    n = int(a_idx.size)
    pa = index_to_pattern(a_idx, portmap.a_bits, lut.signed)
    pw = index_to_pattern(w_idx, portmap.w_bits, lut.signed)
    (workdir / "a.hex").write_text("\n".join(f"{int(v):x}" for v in pa) + "\n")
    (workdir / "b.hex").write_text("\n".join(f"{int(v):x}" for v in pw) + "\n")
    (workdir / "tb.v").write_text(testbench(module, ports, portmap, n))
    t0 = time.perf_counter()
    srcs = [str(Path(f).resolve()) for f in [*files, *map(Path, extra_sources)]]
    run_tool("iverilog", ["-g2012", "-o", "tb.vvp", "-s", "axcnn_tb", "tb.v", *srcs],
             cwd=workdir, timeout=timeout, log_name="iverilog")
    res = run_tool("vvp", ["-n", "tb.vvp"], cwd=workdir, timeout=timeout, log_name="vvp")
    got = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    ob = portmap.out_bits
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        i, bits = int(parts[0]), parts[1]
        if re.fullmatch(r"[01]+", bits) and i < n:
            v = int(bits, 2)
            if lut.signed and v >= 1 << (ob - 1):
                v -= 1 << ob
            got[i] = v
    want = lut.table[a_idx, w_idx].astype(np.int64)
    bad = np.nonzero(got != want)[0]
    av = a_idx - lut.a_offset
    wv = w_idx - lut.w_offset
    examples = [(int(av[i]), int(wv[i]), int(want[i]),
                 None if got[i] == np.iinfo(np.int64).min else int(got[i])) for i in bad[:10]]
    return {"checked": n, "mismatches": int(bad.size), "examples": examples,
            "seconds": time.perf_counter() - t0, "workdir": str(workdir)}
