"""Fixtures of the ops tests."""

from __future__ import annotations

import pytest

from axcnn.ops import torch_backend


@pytest.fixture
def path_spy(monkeypatch):
    """Counts which LUT-GEMM strategy the torch backend used ('gather' or 'bag')."""
    calls = {"gather": 0, "bag": 0}
    gather, bag = torch_backend._gather_gemm, torch_backend._bag_gemm

    def spy_gather(*args, **kw):
        calls["gather"] += 1
        return gather(*args, **kw)

    def spy_bag(*args, **kw):
        calls["bag"] += 1
        return bag(*args, **kw)

    # the tests' shapes are small: switch strategy at M = R/4 so that both paths are exercised
    monkeypatch.setattr(torch_backend, "GATHER_ROWS_PER_LUT_ROW", 0.25)
    monkeypatch.setattr(torch_backend, "_gather_gemm", spy_gather)
    monkeypatch.setattr(torch_backend, "_bag_gemm", spy_bag)
    return calls
