"""Fixtures of the explore tests: a tiny quantized LeNet-5, the SubXPAT test double."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOUBLE = REPO / "tests" / "fixtures" / "subxpat_double"
#: subsets that keep every CNN evaluation to about a second on 2 cores
SUBSETS = {"train_subset": 256, "test_subset": 200}


def train_tiny(runs: Path, bits: int = 4) -> Path:
    """A LeNet-5 on the synthetic dataset: exact (1 epoch) then quantized (0 epochs)."""
    from axcnn.config import Stage, resolve_config
    from axcnn.train import RunEnv, run_stage

    env = RunEnv(runs_dir=runs, progress=False)
    run_stage(resolve_config("lenet5", "synthetic", Stage.EXACT, optim_overrides={"epochs": 1},
                             **SUBSETS), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.QUANTIZED, bits=bits,
                             optim_overrides={"epochs": 0}, **SUBSETS), env)
    return runs


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """A runs folder with lenet5-synthetic exact and quantized-4u checkpoints."""
    return train_tiny(tmp_path_factory.mktemp("tiny") / "runs")


@pytest.fixture
def double_source():
    """A SubXPAT source mapping that runs the test double with this interpreter."""
    def make(**extra):
        src = {"type": "subxpat", "dir": str(DOUBLE), "python": sys.executable,
               "benchmark": "mul_i8_o8", "args": ["--subxpat", "-e", "4"], "wall_budget_s": 120,
               "poll_s": 0.2}
        src.update(extra)
        return src
    return make


@pytest.fixture
def subsets() -> dict:
    return dict(SUBSETS)


@pytest.fixture
def eda():
    need_eda()


def need_eda():
    from axcnn.errors import ToolNotFound
    from axcnn.hw.liberty import default_liberty
    from axcnn.toolchain import find_tool

    try:
        find_tool("yosys")
        find_tool("sta")
        default_liberty()
    except ToolNotFound as exc:
        pytest.skip(f"needs yosys, OpenSTA and the default liberty: {exc}")
