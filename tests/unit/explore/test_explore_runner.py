"""The coordinator: rows, resume, failures, CNN sharing, the folder lock, status."""

from __future__ import annotations

import json
import sqlite3

import pytest

from axcnn.errors import ConfigError
from axcnn.explore.runner import FolderLock, exploration_status, run_exploration
from axcnn.explore.spec import spec_from_dict
from axcnn.explore.store import ResultsStore



def _rows(folder):
    with ResultsStore(folder / "results.sqlite", readonly=True) as st:
        return st.rows()


def test_lut_only_exploration_resumes_without_redoing(tmp_path):
    spec = spec_from_dict({"name": "luts", "bits": 4, "cnn": False, "hardware": False,
                           "sources": [{"type": "builtin", "families": ["trunc", "bam"]},
                                       {"type": "builtin", "names": ["trunc3", "exact"]}]},
                          base_dir=tmp_path)
    s1 = run_exploration(spec, tmp_path / "ex", progress=False)
    rows = _rows(tmp_path / "ex")
    names = [r["name"] for r in rows]
    assert s1.ok == len(rows) == len(set(names)) and "exact_4u" in names
    # trunc3 named twice and grid points with the same function (bam1_4 = trunc4 ...): one row
    assert s1.seen == s1.ok + s1.skipped and s1.skipped >= 1
    assert all(r["status"] == "ok" and r["mae"] is not None and r["w_mae"] == pytest.approx(r["mae"])
               for r in rows)
    exact = next(r for r in rows if r["name"] == "exact_4u")
    assert exact["exact"] == 1 and exact["mae"] == 0
    assert all((tmp_path / "ex" / "luts" / f"{r['lut_sha256']}.npz").is_file() for r in rows)
    s2 = run_exploration(spec, tmp_path / "ex", progress=False)
    assert s2.ok == 0 and s2.skipped == s1.seen
    assert _rows(tmp_path / "ex") == rows


def test_failures_are_recorded_and_retried_a_bounded_number_of_times(tmp_path):
    from axcnn.lut import builtin, save_lut

    d = tmp_path / "c"
    d.mkdir()
    save_lut(builtin("trunc3@4u"), d / "ok.npz")
    save_lut(builtin("trunc3@2u"), d / "small.npz")     # a 2-bit LUT in a 4-bit sweep
    spec = spec_from_dict({"name": "f", "bits": 4, "cnn": {"retrain": "none"}, "hardware": False,
                           "runs_dir": "runs", "max_attempts": 2,
                           "sources": [{"type": "folder", "path": "c"}]}, base_dir=tmp_path)
    # no quantized checkpoint: the exploration says how to make one
    with pytest.raises(ConfigError, match="axcnn train"):
        run_exploration(spec, tmp_path / "ex", progress=False)


def test_exploration_with_cnn_hardware_and_subxpat_double(tmp_path, tiny_runs, double_source,
                                                        subsets, eda):
    spec = spec_from_dict({
        "name": "full", "model": "lenet5", "dataset": "synthetic", "bits": 4,
        "runs_dir": str(tiny_runs), "operands": "stats",
        "cnn": {"retrain": "none", **subsets}, "hardware": {"vectors": 1024},
        "sources": [{"type": "builtin", "names": ["exact"]},
                    double_source(args=["--subxpat", "-e", "2"]),
                    {"type": "folder", "path": "bad"}]}, base_dir=tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.v").write_text("module broken(a, b, y); input [3:0] a, b; output [7:0] y;\n"
                                  "assign y = a * ;\nendmodule\n")
    s = run_exploration(spec, tmp_path / "ex", progress=False)
    rows = _rows(tmp_path / "ex")
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(rows) == 1 + 2 + 1 and s.ok == 3 and s.failed == 1
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["status"] == "failed" and broken["stage"] == "eda" and broken["attempts"] == 1
    for r in ok:
        assert r["accuracy"] is not None and 0 <= r["accuracy"] <= 100
        assert r["area_um2"] > 0 and r["power_w"] > 0 and r["delay_ns"] > 0
        assert r["pda"] == pytest.approx(r["area_um2"] * r["power_w"] * r["delay_ns"])
        assert r["w_mae"] is not None and json.loads(r["info"]) is not None
    sx = [r for r in ok if r["source"] == "subxpat"]
    assert len(sx) == 2
    # SubXPAT's two circuits (ET 1 and 2) have one function: CNN runs are shared per LUT
    con = sqlite3.connect(tmp_path / "ex" / "results.sqlite")
    n_cnn = con.execute("SELECT COUNT(*) FROM cnn").fetchone()[0]
    assert n_cnn == len({r["lut_sha256"] for r in ok}) < len(ok)
    exact = next(r for r in ok if r["name"] == "exact_4u")
    assert exact["mae"] == 0 and abs(exact["accuracy_drop"]) < 2.0
    # resume: nothing redone, the failure is retried once more (max_attempts 2), then left
    s2 = run_exploration(spec, tmp_path / "ex", progress=False)
    assert (s2.ok, s2.failed, s2.skipped) == (0, 1, 3)
    s3 = run_exploration(spec, tmp_path / "ex", progress=False)
    assert (s3.ok, s3.failed, s3.skipped) == (0, 0, 4)
    assert len(_rows(tmp_path / "ex")) == 4
    st = exploration_status(tmp_path / "ex")
    assert st["totals"] == {"ok": 3, "failed": 1} and st["running_pid"] is None
    assert st["subxpat_runs"][0]["status"] == "done" and st["subxpat_runs"][0]["circuits"] == 2


def test_one_coordinator_per_folder(tmp_path):
    lock = FolderLock(tmp_path)
    lock.acquire()
    try:
        spec = spec_from_dict({"name": "x", "bits": 4, "cnn": False, "hardware": False,
                               "sources": [{"type": "builtin", "names": ["exact"]}]})
        with pytest.raises(ConfigError, match="another 'axcnn explore run'"):
            run_exploration(spec, tmp_path, progress=False)
    finally:
        lock.release()
    run_exploration(spec, tmp_path, progress=False)


class _Flaky:
    """An executor whose first ``lose`` tasks are lost as if their worker died."""

    def __init__(self, lose):
        from axcnn.explore.executors import SequentialExecutor

        self.inner = SequentialExecutor()
        self.lose = lose
        self.capacity = 1

    def describe(self):
        return "flaky"

    def submit(self, kind, fn, job):
        return self.inner.submit(kind, fn, job)

    def poll(self, timeout):
        out = []
        for tid, res in self.inner.poll(timeout):
            if self.lose > 0:
                self.lose -= 1
                res = {"ok": False, "stage": "eda", "error": "the worker was lost",
                       "infrastructure": True}
            out.append((tid, res))
        return out

    def close(self, wait=True):
        pass


def test_lost_workers_are_retried_once_then_stop_the_run(tmp_path):
    from axcnn.errors import ToolError

    spec = spec_from_dict({"name": "l", "bits": 4, "cnn": False, "hardware": False,
                           "sources": [{"type": "builtin", "names": ["exact", "trunc3"]}]})
    s = run_exploration(spec, tmp_path / "a", progress=False, executor=_Flaky(1))
    assert (s.ok, s.failed) == (2, 0)                    # the lost task ran again
    s = run_exploration(spec, tmp_path / "b", progress=False, executor=_Flaky(2))
    assert (s.ok, s.failed) == (1, 1)                    # lost twice: recorded as a failure
    many = spec_from_dict({"name": "l", "bits": 4, "cnn": False, "hardware": False,
                           "sources": [{"type": "builtin", "families": ["trunc", "drum"]}]})
    with pytest.raises(ToolError, match="worker processes died"):
        run_exploration(many, tmp_path / "c", progress=False, executor=_Flaky(100))
