"""Synthesis with yosys + ABC onto a liberty library: area, cell counts, mapped netlist.

The script (kept as ``synth.ys`` in the step directory) is::

    read_verilog FILE...
    hierarchy -check -top TOP
    synth -flatten -top TOP
    opt_clean -purge
    abc -liberty LIB            (ABC maps the gates onto the library's combinational cells)
    opt_clean -purge
    setundef -zero
    stat -liberty LIB           (area in the library's unit, um^2 for osu018)
    write_verilog -noexpr -noattr -simple-lhs mapped.v   (what Debian's OpenSTA can read)
    write_json mapped.json      (for workload-aware power)

Area is yosys' "Chip area" (the sum of the liberty ``area`` of the cells); cell counts come from
the mapped netlist.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .netlist import CircuitError, read_commands, run_yosys_script


@dataclass
class SynthResult:
    """The outcome of :func:`synthesize`."""

    top: str
    area_um2: float
    cells: dict[str, int]
    mapped_verilog: Path
    mapped_json: Path
    liberty: Path
    workdir: Path
    seconds: float
    script: Path
    extra: dict = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return sum(self.cells.values())


_AREA = re.compile(r"Chip area for (?:top )?module '\\?(?P<mod>[^']+)':\s*(?P<area>[0-9.eE+-]+)")


def synth_script(files: Sequence[Path], liberty: Path, top: str | None,
                 abc_script: Path | None = None) -> str:
    lib = str(Path(liberty).resolve())
    hier = f"hierarchy -check -top {top}" if top else "hierarchy -check -auto-top"
    synth = f"synth -flatten -top {top}" if top else "synth -flatten -auto-top"
    abc = f"abc -liberty {lib}" + (f" -script {Path(abc_script).resolve()}" if abc_script else "")
    return "\n".join([
        "# axcnn: map the design onto the liberty cells (run: yosys -s synth.ys)",
        read_commands(files),
        hier,
        synth,
        "opt_clean -purge",
        abc,
        "opt_clean -purge",
        "setundef -zero",
        f"stat -liberty {lib}",
        "write_verilog -noexpr -noattr -simple-lhs mapped.v",
        "write_json mapped.json",
        "",
    ])


def synthesize(verilog: str | os.PathLike | Sequence[str | os.PathLike], liberty: str | os.PathLike,
               workdir: str | os.PathLike, *, top: str | None = None,
               timeout: float | None = None, abc_script: str | os.PathLike | None = None) -> SynthResult:
    """Map ``verilog`` onto ``liberty`` with yosys + ABC; see the module docstring."""
    files = [Path(verilog)] if isinstance(verilog, (str, os.PathLike)) else [Path(v) for v in verilog]
    for f in files:
        if not f.is_file():
            raise CircuitError(f"Verilog file '{f}' does not exist")
    workdir = Path(workdir)
    liberty = Path(liberty)
    t0 = time.perf_counter()
    script = synth_script(files, liberty, top, Path(abc_script) if abc_script else None)
    res = run_yosys_script(script, workdir, timeout=timeout, name="synth", verilog=files)
    seconds = time.perf_counter() - t0
    out_log = workdir / "synth.out"
    text = out_log.read_text(errors="replace") if out_log.is_file() else res.stdout
    areas = _AREA.findall(text)
    data = json.loads((workdir / "mapped.json").read_text())
    modules = data.get("modules", {})
    top_name = top
    if top_name is None:
        tops = [n for n, m in modules.items()
                if str(m.get("attributes", {}).get("top", "0")).strip("0") != ""]
        top_name = tops[0] if tops else next(iter(modules))
    if top_name not in modules:
        raise CircuitError(f"synthesis of {files[0]} produced no module '{top_name}'")
    area = None
    for mod, value in areas:
        if mod == top_name:
            area = float(value)
    if area is None:
        area = float(areas[-1][1]) if areas else 0.0
    counts: dict[str, int] = {}
    for c in modules[top_name].get("cells", {}).values():
        counts[c["type"]] = counts.get(c["type"], 0) + 1
    unmapped = sorted(t for t in counts if t.startswith("$"))
    if unmapped:
        raise CircuitError(f"synthesis left unmapped cells {unmapped} (is {liberty} missing "
                           "combinational cells, or is the design sequential?)")
    result = SynthResult(top_name, area, dict(sorted(counts.items())), workdir / "mapped.v",
                         workdir / "mapped.json", liberty, workdir, seconds, workdir / "synth.ys")
    (workdir / "synth.json").write_text(json.dumps(
        {"top": top_name, "area_um2": area, "cells": result.cells, "n_cells": result.n_cells,
         "liberty": str(liberty.resolve()), "seconds": seconds}, indent=2) + "\n")
    return result
