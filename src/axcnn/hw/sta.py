"""OpenSTA: critical-path delay and the tool's vectorless power of a mapped netlist.

The script (``sta.tcl`` in the step directory) reads the liberty and the mapped netlist
(yosys ``write_verilog -noexpr -simple-lhs``, the only form Debian's OpenSTA 2019 snapshot
parses), puts a virtual clock of ``clock_ns`` on all inputs and outputs with zero external
delays, and runs ``report_checks -path_delay max`` (the data arrival time of the worst path
is the combinational delay) and ``report_power``.

About the vectorless power of Debian's OpenSTA (``opensta 0~20191111``), as measured with
it: there is no ``read_vcd``/``read_saif``; ``set_power_activity -pins`` fails (only
``-global``, ``-input`` and ``-input_ports`` work); the input activity is propagated gate by
gate with a probability formula that assumes independent inputs (no reconvergence or operand
correlation) and gives an XOR of two independent random inputs activity 0.25 instead of 0.5;
and internal power is charged as ``rise_power + fall_power`` for every transition, twice the
Liberty per-transition energy (measured on an inverter chain, see the tests). On multipliers,
made of XORs, multiplexers and reconvergent carries, its figure does not follow what the
circuit computes (it puts DRUM and Mitchell multipliers above the exact one, where simulation
puts them below) -- which is why axcnn reports workload-aware power (:mod:`axcnn.hw.power`)
beside it. ``report_power`` here is run with the operand stream's input activity so the two
figures use the same inputs.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ToolError
from .liberty import read_liberty
from .netlist import CircuitError

#: OpenSTA's default input activity (toggles per clock period) when none is set
STA_DEFAULT_ACTIVITY = 0.1


@dataclass
class StaResult:
    """Delay and vectorless power from OpenSTA."""

    delay_ns: float
    path_from: str | None
    path_to: str | None
    power_W: dict[str, float]
    input_activity: float
    clock_ns: float
    workdir: Path
    seconds: float
    version: str = ""
    extra: dict = field(default_factory=dict)

    def power_report(self) -> dict:
        return {
            "method": "opensta-vectorless",
            "description": ("OpenSTA report_power after set_power_activity -input: the input "
                            "activity is propagated with an independent-inputs probability "
                            "formula (no VCD/SAIF in Debian's 2019 OpenSTA) and internal power "
                            "counts rise+fall energy per transition; it tracks cell count and "
                            "gate types, not the workload"),
            "tool": f"OpenSTA {self.version}".strip(),
            "activity_per_clock": self.input_activity,
            "clock_ns": self.clock_ns,
            "units": "W",
            **{f"{k}_W": v for k, v in self.power_W.items()},
        }


def sta_script(liberty: Path, mapped_verilog: Path, top: str, clock_ns: float,
               input_activity: float | None) -> str:
    lines = [
        "# axcnn: delay and vectorless power (run: sta -no_splash -exit sta.tcl)",
        f"read_liberty {{{Path(liberty).resolve()}}}",
        f"read_verilog {{{Path(mapped_verilog).resolve()}}}",
        f"link_design {top}",
        f"create_clock -name vclk -period {clock_ns:g}",
        "set_input_delay 0 -clock vclk [all_inputs]",
        "set_output_delay 0 -clock vclk [all_outputs]",
        'puts "AXCNN-BEGIN-CHECKS"',
        "report_checks -path_delay max -digits 6",
        'puts "AXCNN-END-CHECKS"',
    ]
    if input_activity is not None:
        lines.append(f"set_power_activity -input -activity {input_activity:g}")
    lines += ['puts "AXCNN-BEGIN-POWER"', "report_power -digits 6", 'puts "AXCNN-END-POWER"',
              "exit", ""]
    return "\n".join(lines)


_ARRIVAL = re.compile(r"^\s*(-?[0-9.]+(?:[eE][-+]?\d+)?)\s+data arrival time", re.M)
_PATH_LINE = re.compile(r"^\s*(?:-?[0-9.]+\s+)+[\^v]\s+(\S+)\s+\((in|out|[^)]*)\)", re.M)
_TOTAL = re.compile(r"^Total\s+([-0-9.eE+]+)\s+([-0-9.eE+]+)\s+([-0-9.eE+]+)\s+([-0-9.eE+]+)", re.M)


def parse_checks(text: str, time_scale_ns: float = 1.0) -> tuple[float, str | None, str | None]:
    """(delay in ns, start point, end point) from ``report_checks`` output; 0 if no path."""
    m = _ARRIVAL.search(text)
    if not m:
        if "No paths found" in text or text.strip() == "":
            return 0.0, None, None
        raise ToolError(f"cannot find 'data arrival time' in OpenSTA's report_checks output: "
                        f"{text.strip()[:300]}")
    start = end = None
    for pm in _PATH_LINE.finditer(text[: m.start()]):
        if pm.group(2) == "in" and start is None:
            start = pm.group(1)
        if pm.group(2) == "out":
            end = pm.group(1)
    return float(m.group(1)) * time_scale_ns, start, end


def parse_power(text: str) -> dict[str, float]:
    m = _TOTAL.search(text)
    if not m:
        raise ToolError(f"cannot find the 'Total' line in OpenSTA's report_power output: "
                        f"{text.strip()[:300]}")
    vals = [float(x) for x in m.groups()]
    return dict(zip(("internal", "switching", "leakage", "total"), vals))


def _section(text: str, name: str) -> str:
    a, b = f"AXCNN-BEGIN-{name}", f"AXCNN-END-{name}"
    if a in text and b in text:
        return text.split(a, 1)[1].split(b, 1)[0]
    return ""


def run_sta(mapped_verilog: str | os.PathLike, liberty: str | os.PathLike, top: str,
            workdir: str | os.PathLike, *, clock_ns: float = 10.0,
            input_activity: float | None = None, timeout: float | None = None) -> StaResult:
    """Run OpenSTA on a mapped netlist: worst-path delay (ns) and vectorless power (W).

    ``input_activity`` is passed to ``set_power_activity -input -activity`` (toggles per clock
    period); None keeps OpenSTA's default (0.1).
    """
    from ..toolchain import ToolFailed, run_tool

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if clock_ns <= 0:
        raise CircuitError(f"clock period must be positive, got {clock_ns} ns")
    tcl = workdir / "sta.tcl"
    tcl.write_text(sta_script(Path(liberty), Path(mapped_verilog), top, clock_ns, input_activity))
    t0 = time.perf_counter()
    try:
        res = run_tool("sta", ["-no_splash", "-exit", tcl.name], cwd=workdir, timeout=timeout,
                       log_name="sta")
    except ToolFailed as exc:
        if "Error" in (exc.output or ""):
            line = next((ln for ln in exc.output.splitlines() if "Error" in ln), "")
            raise ToolError(f"OpenSTA failed on {mapped_verilog}: {line.strip()} "
                            f"(log: {exc.log_path})") from None
        raise
    out = res.stdout + "\n" + res.stderr
    errors = [ln for ln in out.splitlines() if re.match(r"^\s*Error\b", ln)]
    if errors:
        raise ToolError(f"OpenSTA reported errors on {mapped_verilog}: {errors[0].strip()} "
                        f"(log: {res.log_path})")
    lib = read_liberty(liberty)
    delay, start, end = parse_checks(_section(out, "CHECKS"), lib.time_si / 1e-9)
    power = parse_power(_section(out, "POWER"))
    return StaResult(delay, start, end, power,
                     STA_DEFAULT_ACTIVITY if input_activity is None else float(input_activity),
                     clock_ns, workdir, time.perf_counter() - t0, res.version)
