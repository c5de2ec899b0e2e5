"""`axcnn explore` end to end: run, kill mid-way, resume, status, export, pareto.

The sweep evaluates built-in 4-bit circuits and the circuits of the SubXPAT test double
(``tests/fixtures/subxpat_double``) on a tiny LeNet-5 (synthetic data); it needs yosys,
OpenSTA and the default liberty (``axcnn circuit setup``) and is skipped without them.
``test_real_subxpat`` runs the real tool when ``SUBXPAT_DIR`` points to a checkout whose
environment is set up (see docs/explore.md).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOUBLE = REPO / "tests" / "fixtures" / "subxpat_double"
SUBSETS = {"train_subset": 256, "test_subset": 200}
#: runs the CLI with the explore command registered (whether or not main.py lists it yet)
ENTRY = ("import sys, axcnn.cli.main as m\n"
         "m.COMMAND_MODULES = tuple(m.COMMAND_MODULES) + (() if 'explore' in m.COMMAND_MODULES "
         "else ('explore',))\nsys.exit(m.main(sys.argv[1:]))\n")
COMPARED = ("key", "source", "status", "lut_sha256", "mae", "wce", "w_mae", "area_um2",
            "delay_ns", "power_w", "pda", "accuracy")


def explore(*args, check=None, timeout=600, env=None, **kw):
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full.pop("AXCNN_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", ENTRY, "explore", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full, **kw)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _need_eda():
    from axcnn.errors import ToolNotFound
    from axcnn.hw.liberty import default_liberty
    from axcnn.toolchain import find_tool

    try:
        find_tool("yosys")
        find_tool("sta")
        default_liberty()
    except ToolNotFound as exc:
        if os.environ.get("AXCNN_REQUIRE_EDA", "").strip() not in ("", "0"):
            pytest.fail(f"AXCNN_REQUIRE_EDA is set but {exc}")
        pytest.skip(f"needs yosys, OpenSTA and the default liberty: {exc}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    from axcnn.config import Stage, resolve_config
    from axcnn.train import RunEnv, run_stage

    runs = tmp_path_factory.mktemp("explore-cli") / "runs"
    env = RunEnv(runs_dir=runs, progress=False)
    run_stage(resolve_config("lenet5", "synthetic", Stage.EXACT, optim_overrides={"epochs": 1},
                             **SUBSETS), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.QUANTIZED, bits=4,
                             optim_overrides={"epochs": 0}, **SUBSETS), env)
    return runs


def write_spec(path: Path, runs: Path, workers: int = 1, **extra) -> Path:
    spec = {
        "name": "cli", "model": "lenet5", "dataset": "synthetic", "bits": 4,
        "runs_dir": str(runs), "operands": "stats",
        "cnn": {"retrain": "none", **SUBSETS}, "hardware": {"vectors": 1024},
        "sources": [
            {"type": "builtin", "names": ["exact", "trunc3", "drum3", "mitchell"]},
            {"type": "subxpat", "dir": str(DOUBLE), "python": sys.executable,
             "benchmark": "mul_i8_o8", "args": ["--subxpat", "-e", "4"], "poll_s": 0.2}],
        "executor": {"kind": "local", "workers": workers}, **extra}
    path.write_text(json.dumps(spec, indent=2))
    return path


def table(folder: Path) -> list[tuple]:
    con = sqlite3.connect(folder / "results.sqlite")
    con.row_factory = sqlite3.Row
    rows = sorted(tuple(r[c] for c in COMPARED) for r in con.execute("SELECT * FROM results"))
    con.close()
    return rows


def ok_rows(folder: Path) -> int:
    try:
        con = sqlite3.connect(folder / "results.sqlite", timeout=5)
        n = con.execute("SELECT COUNT(*) FROM results WHERE status='ok'").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def test_kill_mid_sweep_and_resume_gives_the_same_table(tmp_path, runs):
    _need_eda()
    # the reference: one uninterrupted run, in this process's style (one worker)
    ref_spec = write_spec(tmp_path / "ref.json", runs)
    out = explore("run", ref_spec, "--dir", tmp_path / "ref", "--no-progress", check=0)
    assert "8 evaluated (8 ok, 0 failed)" in out.stdout, out.stdout + out.stderr
    reference = table(tmp_path / "ref")
    assert len(reference) == 8 and all(r[2] == "ok" for r in reference)

    # the same sweep with a process pool, killed (SIGKILL, whole process group) mid-way
    spec = write_spec(tmp_path / "spec.json", runs, workers=2)
    folder = tmp_path / "ex"
    full = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, "explore", "run", str(spec), "--dir",
                             str(folder), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=full, start_new_session=True)
    try:
        deadline = time.time() + 240
        while ok_rows(folder) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before = ok_rows(folder)
    assert 2 <= done_before < 8
    time.sleep(0.5)

    # resume: same final table, no duplicates, finished rows untouched
    out = explore("run", spec, "--dir", folder, "--no-progress", "--json", check=0)
    summary = json.loads(out.stdout)
    assert summary["skipped"] >= done_before - 0 and summary["ok"] + summary["skipped"] >= 8
    final = table(folder)
    assert final == reference
    assert len({r[0] for r in final}) == len(final) == 8

    # status, export (seed CSV + Parquet), pareto
    st = explore("status", folder, check=0).stdout
    assert "8 ok, 0 failed" in st and "not running" in st and "SubXPAT" in st
    js = json.loads(explore("status", folder, "--json", check=0).stdout)
    assert js["totals"] == {"ok": 8}
    explore("export", folder, "--csv", tmp_path / "seed.csv", "--parquet", tmp_path / "all.parquet",
            check=0)
    rows = list(csv.DictReader((tmp_path / "seed.csv").open()))
    assert list(rows[0]) == ["file", "area", "power", "delay", "pda", "mean_ae", "mean_ae_cnn",
                             "max_ae", "accuracy"]
    assert len(rows) == 8 and all(r["file"].endswith("_cli") and float(r["area"]) > 0 for r in rows)
    assert any(r["file"].startswith("mul_i8_o8_") for r in rows)
    out = explore("pareto", folder, check=0).stdout
    assert "Pareto front: accuracy vs power" in out
    for c in ("power", "area", "pda"):
        assert (folder / "pareto" / f"pareto_{c}.png").is_file()
    fronts = json.loads(explore("pareto", folder, "--cost", "area", "--json", check=0).stdout)
    assert fronts["area"] and all("accuracy" in p for p in fronts["area"])


def test_cli_errors_are_one_line(tmp_path, runs):
    out = explore("run", tmp_path / "missing.yaml", check=2)
    assert out.stderr.startswith("axcnn: error: explore spec") and "Traceback" not in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources: [{type: builtin}]\nexecutor: {kind: slurm}\n")
    assert "executor.kind" in explore("run", bad, check=2).stderr
    nockpt = tmp_path / "nockpt.yaml"
    nockpt.write_text("name: x\nbits: 4\nhardware: false\nruns_dir: nowhere\n"
                      "sources: [{type: builtin, names: [exact]}]\n")
    err = explore("run", nockpt, "--dir", tmp_path / "x", check=2).stderr
    assert "axcnn train" in err and "quantized" in err
    assert "no results store" in explore("status", tmp_path / "nothing", check=2).stderr
    sx = tmp_path / "sx.yaml"
    sx.write_text("name: x\nbits: 4\ncnn: false\nhardware: false\n"
                  "sources: [{type: subxpat, benchmark: mul_i8_o8}]\n")
    env = {k: v for k, v in os.environ.items() if k != "SUBXPAT_DIR"}
    out = subprocess.run([sys.executable, "-c", ENTRY, "explore", "run", str(sx), "--dir",
                          str(tmp_path / "y")], capture_output=True, text=True, env=env)
    assert out.returncode == 3 and "SUBXPAT_DIR" in out.stderr


@pytest.mark.skipif(not os.environ.get("SUBXPAT_DIR"),
                    reason="set SUBXPAT_DIR to a SubXPAT checkout with its .venv to run the real tool")
def test_real_subxpat_2x2(tmp_path):
    """The real SubXPAT on a 2x2 multiplier (about 40 s): circuits -> LUTs and hardware."""
    _need_eda()
    spec = tmp_path / "real.json"
    spec.write_text(json.dumps({
        "name": "real", "bits": 2, "cnn": False, "hardware": {"vectors": 1024},
        "sources": [{"type": "subxpat", "benchmark": "mul_i4_o4", "wall_budget_s": 600,
                     "args": ["--subxpat", "--max-lpp", "2", "--max-ppo", "2", "--imax", "4",
                              "--omax", "2", "-e", "4", "--min-labeling", "--timeout", "60"]}]}))
    out = explore("run", spec, "--dir", tmp_path / "ex", "--no-progress", "--json", check=0,
                  timeout=900)
    summary = json.loads(out.stdout)
    assert summary["ok"] >= 2 and summary["failed"] == 0, out.stderr
    con = sqlite3.connect(tmp_path / "ex" / "results.sqlite")
    rows = con.execute("SELECT name, wce, area_um2, exact FROM results").fetchall()
    assert all(name.startswith("mul_i4_o4_") and wce <= 4 and area > 0
               for name, wce, area, _ in rows)
    state = json.loads(next((tmp_path / "ex").glob("sources/subxpat/*/state.json")).read_text())
    assert state["status"] == "done" and len(state["circuits"]) == len(rows)


@pytest.mark.skipif(not os.environ.get("EVOAPPROX_DIR"),
                    reason="set EVOAPPROX_DIR to a checkout of ehw-fit/evoapproxlib")
def test_real_evoapproxlib(tmp_path):
    """A few 8x8 unsigned circuits of the real library: C models (gcc) agree with the Verilog,
    and the error metrics with the library's own header figures."""
    _need_eda()
    spec = tmp_path / "evo.json"
    spec.write_text(json.dumps({
        "name": "evo", "bits": 8, "cnn": False, "hardware": {"vectors": 1024},
        "sources": [{"type": "evoapprox", "path": os.environ["EVOAPPROX_DIR"], "limit": 3}]}))
    out = explore("run", spec, "--dir", tmp_path / "ex", "--no-progress", "--json", check=0)
    assert json.loads(out.stdout)["ok"] == 3, out.stderr
    con = sqlite3.connect(tmp_path / "ex" / "results.sqlite")
    for name, mae, wce, info, notes, area in con.execute(
            "SELECT name, mae, wce, info, notes, area_um2 FROM results"):
        info = json.loads(info)
        assert notes is None, notes                         # C model == generic Verilog
        assert mae == pytest.approx(info["mae"], abs=0.51) and wce == info["wce"]
        assert area > 0
