"""`axcnn heatmap` on operand statistics recorded by the real pipeline."""

import csv
import json

import numpy as np
import pytest

from axcnn.config import Stage, resolve_config
from axcnn.lut import load_lut, weighted_mae
from axcnn.nn import load_operand_stats
from axcnn.train import RunEnv, run_stage

SYN = ["--model", "lenet5", "--dataset", "synthetic", "--no-progress", "-q"]


@pytest.fixture(scope="module")
def stats_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    env = RunEnv(runs_dir=runs, progress=False)
    common = dict(train_subset=200, test_subset=50, calib_batches=2)
    run_stage(resolve_config("lenet5", "synthetic", Stage.EXACT, optim_overrides={"epochs": 1}, **common), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.QUANTIZED, optim_overrides={"epochs": 0}, **common), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.STATS, **common), env)
    return runs


def test_heatmaps_and_weighted_lut_errors(stats_runs, cli, tmp_path):
    p = cli("heatmap", *SYN, "--runs-dir", stats_runs, "--mode", "both", "--max-channels", "4", "--dpi", "40",
            "--lut", "builtin:drum3", "builtin:exact@4u", check=0)
    out = stats_runs / "lenet5-synthetic" / "heatmap" / "stats-8u"
    assert str(out) in p.stdout
    meta = json.loads((out / "heatmap.json").read_text())
    assert set(meta["layers"]) == {"features.0", "features.4"}
    for f in meta["figures"]:
        assert (out / f).stat().st_size > 1000, f
    names = set(meta["figures"])
    assert {"operands_features-0.png", "operands_features-4_channels.png", "operands_all.png"} <= names
    assert any(n.startswith("overlay_drum3_8u-") for n in names)
    hists, _ = load_operand_stats(stats_runs / "lenet5-synthetic" / "stats-8u" / "operand_stats.npz")
    total = sum(h.sum(axis=0) for h in hists.values())
    drum = load_lut("builtin:drum3@8u")
    expected = weighted_mae(drum, total)
    m = [line for line in p.stdout.splitlines() if "LUT drum3_8u" in line][0]
    assert f"mean_ae_cnn {expected:.4g}" in m
    rows = list(csv.DictReader(open(out / "lut_errors.csv")))
    model_row = next(r for r in rows if r["lut"] == "drum3_8u" and r["layer"] == "(model)")
    assert float(model_row["mae"]) == pytest.approx(expected, rel=1e-5)
    assert int(model_row["multiplications"]) == int(total.sum())
    # a 4-bit LUT against 8-bit statistics: rebinned, and the exact one has no error
    assert "LUT exact_4u: mean_ae_cnn 0 " in p.stdout and "rebinned" in p.stdout
    with np.load(out / "operands.npz") as z:
        np.testing.assert_array_equal(z["features-0"], hists["features.0"].sum(axis=0))
    # --stats FILE with --out, one layer, no overlays
    alt = tmp_path / "alt"
    cli("heatmap", "--stats", stats_runs / "lenet5-synthetic" / "stats-8u" / "operand_stats.npz",
        "--layer", "features.4", "--out", alt, "--lut", "builtin:trunc8", "--no-overlay", "--no-progress", check=0)
    meta2 = json.loads((alt / "heatmap.json").read_text())
    assert list(meta2["layers"]) == ["features.4"] and not any("overlay" in f for f in meta2["figures"])


def test_missing_statistics_and_bad_layer(stats_runs, cli, tmp_path):
    p = cli("heatmap", *SYN, "--runs-dir", tmp_path, check=2)
    assert "axcnn train --model lenet5 --dataset synthetic --conv_type 5 --bits 8" in p.stderr
    assert "Traceback" not in p.stderr
    q = cli("heatmap", *SYN, "--runs-dir", stats_runs, "--layer", "nope", "--out", tmp_path / "o", check=2)
    assert "features.0" in q.stderr  # lists the layers it has
