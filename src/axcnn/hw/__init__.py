"""Multiplier circuits: Verilog generators, netlist simulation -> LUT, synthesis, timing, power.

Modules (imported lazily; none of them needs the EDA tools at import time):

- :mod:`~axcnn.hw.verilog`  -- Verilog generators for the built-in families
- :mod:`~axcnn.hw.netlist`  -- yosys elaboration, gate netlists, bit-parallel simulation
- :mod:`~axcnn.hw.ports`    -- port conventions (SubXPAT, EvoApproxLib, plain, explicit)
- :mod:`~axcnn.hw.simulate` -- Verilog -> LUT, iverilog cross-check
- :mod:`~axcnn.hw.liberty`  -- liberty parsing, the default osu018 library
- :mod:`~axcnn.hw.synth`    -- yosys + ABC mapping, area, cell counts
- :mod:`~axcnn.hw.sta`      -- OpenSTA delay and vectorless power
- :mod:`~axcnn.hw.power`    -- operand streams and workload-aware (toggle-count) power
- :mod:`~axcnn.hw.report`   -- the full circuit report (JSON)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate_verilog": "verilog", "write_verilog": "verilog", "module_name": "verilog",
    "elaborate": "netlist", "Netlist": "netlist", "CircuitError": "netlist",
    "detect_ports": "ports", "PortMap": "ports", "PortError": "ports", "CONVENTIONS": "ports",
    "verilog_to_lut": "simulate", "netlist_table": "simulate", "iverilog_check": "simulate",
    "SimulationResult": "simulate",
    "read_liberty": "liberty", "default_liberty": "liberty", "install_default_liberty": "liberty",
    "resolve_liberty": "liberty", "Library": "liberty",
    "synthesize": "synth", "SynthResult": "synth",
    "run_sta": "sta", "StaResult": "sta",
    "operand_stream": "power", "OperandStream": "power", "workload_power": "power",
    "activity_power": "power", "load_histogram": "power",
    "circuit_report": "report", "format_report": "report", "format_table": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'axcnn.hw' has no attribute '{name}'")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
