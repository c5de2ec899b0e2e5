"""The full report of one multiplier circuit: LUT and error, area, delay, power.

:func:`circuit_report` runs every step in its own sub-directory of ``workdir``, each keeping its
scripts, logs and a ``commands.sh`` that reproduces it:

===============  ===========================================================================
``simulate/``    yosys elaboration (``elaborate.ys``) and exhaustive simulation -> ``lut.npz``
``synth/``       yosys + ABC mapping onto the liberty (``synth.ys``, ``mapped.v``, ``mapped.json``)
``sta/``         OpenSTA delay and vectorless power (``sta.tcl``, ``sta.log``)
``power/``       workload-aware power (``power.json``: operand stream, toggles, figures)
===============  ===========================================================================

and writes ``report.json`` (the returned dict) at the top. The mapped netlist is simulated on
all operand pairs too, so ``mapped_equivalent`` checks that synthesis kept the function.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..lut import lut_metrics, save_lut
from .netlist import CircuitError, Netlist

log = logging.getLogger(__name__)

DEFAULT_CLOCK_NS = 10.0
DEFAULT_VECTORS = 65536


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def circuit_report(verilog: str | os.PathLike | Sequence[str | os.PathLike], *,
                   workdir: str | os.PathLike, liberty: str | os.PathLike | None = None,
                   operands: str | os.PathLike = "uniform", signed: bool | None = None,
                   convention: str = "auto", explicit: dict[str, str] | None = None,
                   a_bits: int | None = None, w_bits: int | None = None, top: str | None = None,
                   clock_ns: float = DEFAULT_CLOCK_NS, vectors: int = DEFAULT_VECTORS,
                   seed: int = 0, delay_model: str = "zero", output_load_pf: float = 0.0,
                   vectorless: bool = True, timeout: float | None = None,
                   name: str | None = None) -> dict:
    """Simulate, synthesize, time and power one multiplier; returns (and saves) the report."""
    from ..toolchain import find_tool, tool_versions
    from .liberty import read_liberty, resolve_liberty
    from .power import operand_stream, stream_input_activity, workload_power
    from .simulate import netlist_table, verilog_to_lut
    from .sta import run_sta
    from .synth import synthesize

    files = [Path(verilog)] if isinstance(verilog, (str, os.PathLike)) else [Path(v) for v in verilog]
    for tool in ("yosys", "sta"):   # fail before any work if a tool is missing (exit 3)
        find_tool(tool)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lib_path = resolve_liberty(liberty)
    lib = read_liberty(lib_path)
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    sim = verilog_to_lut(files, workdir=workdir / "simulate", signed=signed, convention=convention,
                         explicit=explicit, a_bits=a_bits, w_bits=w_bits, top=top, name=name,
                         timeout=timeout)
    seconds.update({f"{k}": v for k, v in sim.seconds.items()})
    lut = sim.lut
    lut_path = save_lut(lut, workdir / "simulate" / "lut.npz")

    t0 = time.perf_counter()
    syn = synthesize(files, lib_path, workdir / "synth", top=sim.netlist.module, timeout=timeout)
    seconds["synth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mapped = Netlist.from_json(syn.mapped_json, top=syn.top, library=lib)
    mapped_table = netlist_table(mapped, sim.portmap, sim.signed)
    equivalent = bool(np.array_equal(mapped_table, lut.table.astype(np.int64)))
    if not equivalent:
        bad = int(np.count_nonzero(mapped_table != lut.table))
        log.warning("%s: the mapped netlist differs from the elaborated one on %d operand pairs",
                    files[0].name, bad)
    seconds["mapped_check"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stream = operand_stream(operands if isinstance(operands, str) else str(operands),
                            sim.portmap.a_bits, sim.portmap.w_bits, n=vectors, seed=seed,
                            signed=sim.signed)
    pw = workload_power(mapped, lib, sim.portmap, sim.signed, stream, clock_ns=clock_ns,
                        output_load_pf=output_load_pf, delay_model=delay_model)
    (workdir / "power").mkdir(parents=True, exist_ok=True)
    (workdir / "power" / "power.json").write_text(json.dumps(_jsonable(
        {**pw, "liberty": str(lib_path), "mapped_netlist": str(syn.mapped_json)}), indent=2) + "\n")
    seconds["power"] = time.perf_counter() - t0

    power = {"workload": pw}
    # OpenSTA always runs for the delay; its vectorless power uses the stream's input activity
    t0 = time.perf_counter()
    in_act = stream_input_activity(stream, sim.portmap.a_bits, sim.portmap.w_bits, sim.signed)
    sta = run_sta(syn.mapped_verilog, lib_path, syn.top, workdir / "sta", clock_ns=clock_ns,
                  input_activity=round(in_act, 6), timeout=timeout)
    seconds["sta"] = time.perf_counter() - t0
    delay_ns = sta.delay_ns
    path = {"from": sta.path_from, "to": sta.path_to}
    if vectorless:
        power["vectorless"] = sta.power_report()
    seconds["total"] = time.perf_counter() - t_all

    report = {
        "file": str(files[0]),
        "module": sim.netlist.module,
        "a_bits": sim.portmap.a_bits,
        "w_bits": sim.portmap.w_bits,
        "signed": sim.signed,
        "ports": sim.portmap.describe()["convention"],
        "port_notes": list(sim.portmap.notes),
        "lut": {"name": lut.name, "sha256": lut.sha256, "path": str(lut_path),
                "exact": lut.is_exact(), "metrics": lut_metrics(lut)},
        "area_um2": syn.area_um2,
        "delay_ns": delay_ns,
        "critical_path": path,
        "cells": {"total": syn.n_cells, "by_type": syn.cells},
        "power": power,
        "mapped_equivalent": equivalent,
        "liberty": lib.describe(),
        "tools": tool_versions(["yosys", "sta"]),
        "warnings": list(sim.netlist.warnings),
        "workdir": str(workdir.resolve()),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
    }
    report["reproduce"] = _reproduce_command(
        files, workdir, lib_path, operands, vectors, seed, clock_ns, delay_model, output_load_pf,
        sim, convention, explicit, top, vectorless)
    report = _jsonable(report)
    (workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    script = workdir / "commands.sh"
    script.write_text("#!/bin/sh\n# Re-run this whole report (each step folder has its own "
                      "commands.sh too).\nset -e\n" + report["reproduce"] + "\n")
    try:
        script.chmod(0o755)
    except OSError:
        pass
    return report


def _reproduce_command(files, workdir, lib_path, operands, vectors, seed, clock_ns, delay_model,
                       output_load_pf, sim, convention, explicit, top, vectorless) -> str:
    import shlex

    argv = ["axcnn", "circuit", "report", *[str(Path(f).resolve()) for f in files[:1]],
            "--liberty", str(Path(lib_path).resolve()),
            "--operands", operands if str(operands) == "uniform" else str(Path(operands).resolve()),
            "--vectors", str(vectors), "--seed", str(seed), "--clock-ns", f"{clock_ns:g}",
            "--delay-model", delay_model, "--output-load-pf", f"{output_load_pf:g}",
            "--signed" if sim.signed else "--unsigned", "--ports", sim.portmap.convention,
            "--bits", str(sim.portmap.a_bits), "--w-bits", str(sim.portmap.w_bits),
            "--workdir", str(Path(workdir).resolve())]
    if explicit:
        for k in ("a", "b", "y"):
            if explicit.get(k):
                argv += [f"--port-{k}", explicit[k]]
    if top:
        argv += ["--top", top]
    if not vectorless:
        argv.append("--no-vectorless")
    return " ".join(shlex.quote(a) for a in argv)


# --------------------------------------------------------------------------------------
# Human-readable output
# --------------------------------------------------------------------------------------

def _fmt_w(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("W", 1.0), ("mW", 1e-3), ("uW", 1e-6), ("nW", 1e-9)):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {unit}"
    return f"{x * 1e12:.4g} pW"


def format_report(r: dict) -> str:
    """A multi-line human-readable summary of one report."""
    if "error" in r:
        return f"{r.get('file')}: ERROR {r['error']}"
    pw = r["power"]["workload"]
    m = r["lut"]["metrics"]
    lines = [
        f"{r['file']}  (module {r['module']}, {r['a_bits']}x{r['w_bits']} "
        f"{'signed' if r['signed'] else 'unsigned'}, ports: {r['ports']})",
        f"  LUT        {r['lut']['name']}  sha256 {r['lut']['sha256'][:12]}  "
        f"MAE {m['mae']:.4g}  WCE {m['wce']:.4g}  MRED {m['mred']:.4g}  EP {m['ep']:.4g}%",
        f"  area       {r['area_um2']:.2f} um^2  ({r['cells']['total']} cells; "
        f"liberty {r['liberty']['name']} @ {r['liberty']['voltage_V']:g} V)",
        f"  delay      {r['delay_ns']:.4f} ns  ({r['critical_path']['from'] or '-'} -> "
        f"{r['critical_path']['to'] or '-'})" if r["delay_ns"] is not None else "  delay      -",
        f"  power      workload ({pw['delay_model']}-delay toggle count, {pw['operands']['source']}, "
        f"{pw['operands']['vectors']} vectors, clock {pw['clock_ns']:g} ns):",
        f"             total {_fmt_w(pw['total_W'])} = internal {_fmt_w(pw['internal_W'])} + "
        f"switching {_fmt_w(pw['switching_W'])} + leakage {_fmt_w(pw['leakage_W'])};  "
        f"{pw['energy_per_op_pJ']:.4g} pJ/op",
    ]
    vl = r["power"].get("vectorless")
    if vl:
        lines.append(f"             vectorless OpenSTA (input activity {vl['activity_per_clock']:.3g}, "
                     f"propagated): total {_fmt_w(vl['total_W'])} = internal "
                     f"{_fmt_w(vl['internal_W'])} + switching {_fmt_w(vl['switching_W'])} + "
                     f"leakage {_fmt_w(vl['leakage_W'])}")
    if not r.get("mapped_equivalent", True):
        lines.append("  WARNING    the mapped netlist is not equivalent to the elaborated one")
    lines.append(f"  workdir    {r['workdir']}")
    return "\n".join(lines)


def format_table(reports: list[dict]) -> str:
    """One row per circuit."""
    head = ["circuit", "bits", "area_um2", "cells", "delay_ns", "P_workload", "pJ/op",
            "P_vectorless", "MAE", "WCE"]
    rows = []
    for r in reports:
        name = Path(r.get("file", "?")).stem
        if "error" in r:
            rows.append([name, "-", "-", "-", "-", "-", "-", "-", "-", f"ERROR: {r['error'][:60]}"])
            continue
        pw = r["power"]["workload"]
        vl = r["power"].get("vectorless", {})
        m = r["lut"]["metrics"]
        bits = (f"{r['a_bits']}" if r["a_bits"] == r["w_bits"] else f"{r['a_bits']}x{r['w_bits']}") \
            + ("s" if r["signed"] else "u")
        rows.append([name, bits, f"{r['area_um2']:.1f}", str(r["cells"]["total"]),
                     f"{r['delay_ns']:.3f}" if r["delay_ns"] is not None else "-",
                     _fmt_w(pw["total_W"]), f"{pw['energy_per_op_pJ']:.3f}",
                     _fmt_w(vl.get("total_W")), f"{m['mae']:.4g}", f"{m['wce']:.4g}"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return "\n".join(out)


__all__ = ["circuit_report", "format_report", "format_table", "CircuitError",
           "DEFAULT_CLOCK_NS", "DEFAULT_VECTORS"]
