"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

#: the project root (this file is <root>/tests/conftest.py)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: development data beside the project, or where $AXCNN_SHARED_DATA says (a GPU machine gets a
#: copy inside the checkout); never part of the product; tests skip without it
SHARED_DATA = Path(os.environ.get("AXCNN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
EVOAPPROX_STEM = "evoapprox8_luts"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data``, or skip the test when that folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared development data not found at {SHARED_DATA}")
    return SHARED_DATA


def _load_evoapprox(root: Path) -> dict[str, tuple[np.ndarray, dict]]:
    npz, js = root / f"{EVOAPPROX_STEM}.npz", root / f"{EVOAPPROX_STEM}.json"
    if not (npz.is_file() and js.is_file()):
        pytest.skip(f"EvoApprox LUTs not found ({npz.name} / {js.name} in {root})")
    info = json.loads(js.read_text())
    with np.load(npz, allow_pickle=False) as z:
        return {name: (z[name], info[name]) for name in z.files}


@pytest.fixture(scope="session")
def evoapprox(shared_data) -> dict[str, tuple[np.ndarray, dict]]:
    """name -> (int32 (256, 256) table, JSON record with 'signed', 'mae', 'wce', 'ep', ...)."""
    return _load_evoapprox(shared_data)


def _evoapprox_names() -> list[str]:
    js = SHARED_DATA / f"{EVOAPPROX_STEM}.json"
    if not js.is_file():
        return []
    return sorted(json.loads(js.read_text()))


def pytest_generate_tests(metafunc):
    """A test that takes ``evoapprox_name`` runs once per shared EvoApprox table (and skips,
    through the ``evoapprox`` fixture, when the data is absent)."""
    if "evoapprox_name" in metafunc.fixturenames:
        names = _evoapprox_names() or ["absent"]
        metafunc.parametrize("evoapprox_name", names)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
