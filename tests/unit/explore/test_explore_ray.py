"""The Ray executor on a local Ray gives the same rows as the in-process executor."""

from __future__ import annotations

import pytest


pytestmark = pytest.mark.ray

try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_RAY = False

COMPARED = ("key", "name", "status", "lut_sha256", "mae", "wce", "w_mae", "accuracy",
            "accuracy_drop", "exact")


@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'axcnn[ray]')")
def test_ray_and_local_give_the_same_rows(tmp_path, tiny_runs, subsets):
    from axcnn.explore.runner import run_exploration
    from axcnn.explore.spec import spec_from_dict
    from axcnn.explore.store import ResultsStore

    def spec(kind, workers):
        return spec_from_dict({
            "name": "r", "model": "lenet5", "dataset": "synthetic", "bits": 4,
            "runs_dir": str(tiny_runs), "cnn": {"retrain": "none", **subsets}, "hardware": False,
            "sources": [{"type": "builtin", "names": ["exact", "trunc3", "drum3", "mitchell"]}],
            "executor": {"kind": kind, "workers": workers}}, base_dir=tmp_path)

    def table(folder):
        with ResultsStore(folder / "results.sqlite", readonly=True) as st:
            return sorted(tuple(r[c] for c in COMPARED) for r in st.rows())

    local = run_exploration(spec("local", 1), tmp_path / "local", progress=False)
    remote = run_exploration(spec("ray", 2), tmp_path / "ray", progress=False)
    assert remote.executor.startswith("Ray") and remote.ok == local.ok == 4
    assert table(tmp_path / "ray") == table(tmp_path / "local")
