"""The closed loop: candidate multipliers -> LUT, error, hardware, CNN accuracy -> results store.

Modules (imported lazily; ``import axcnn.explore`` loads neither torch nor the EDA flow):

- :mod:`~axcnn.explore.spec`        -- the YAML/JSON spec and the settings hash
- :mod:`~axcnn.explore.candidates`  -- candidates, the source interface, built-in and folder sources
- :mod:`~axcnn.explore.subxpat`     -- the SubXPAT adapter
- :mod:`~axcnn.explore.evoapprox`   -- EvoApproxLib (C models via gcc, or Verilog)
- :mod:`~axcnn.explore.evaluate`    -- the per-candidate EDA and CNN tasks (worker side)
- :mod:`~axcnn.explore.store`       -- the SQLite results store
- :mod:`~axcnn.explore.executors`   -- sequential, process pool and Ray executors
- :mod:`~axcnn.explore.runner`      -- the coordinator, resumable; status
- :mod:`~axcnn.explore.export`      -- the seed's CSV, Parquet, JSON
- :mod:`~axcnn.explore.pareto`      -- Pareto fronts and figures
- :mod:`~axcnn.explore.dash_page`   -- the Pareto page of the Dash explorer
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExploreSpec": "spec", "load_spec": "spec", "spec_from_dict": "spec",
    "Candidate": "candidates", "Source": "candidates", "make_sources": "candidates",
    "ResultsStore": "store", "store_path": "store", "SCHEMA_VERSION": "store",
    "make_executor": "executors",
    "run_exploration": "runner", "exploration_status": "runner",
    "export_csv": "export", "export_parquet": "export", "load_rows": "export",
    "pareto_front": "pareto", "pareto_fronts": "pareto", "plot_fronts": "pareto",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'axcnn.explore' has no attribute '{name}'")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
