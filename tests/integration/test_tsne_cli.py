"""`axcnn tsne` end to end on the synthetic dataset: training missing stages, artefacts, flips."""

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from axcnn.analysis.artifacts import SEED_KEYS, load_artifact

pytest.importorskip("openTSNE")

SYN = ["--model", "lenet5", "--dataset", "synthetic", "--no-progress", "-q"]
FAST = ["--max-train", "40", "--max-test", "120", "--n-iter", "120", "--early-iter", "50", "--jobs", "1",
        "--dpi", "50"]


def _dirs(stdout: str) -> list[Path]:
    return [Path(m) for m in re.findall(r"^t-SNE .*?: (\S+)", stdout, re.M)]


def _checkpoint_hashes(runs: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in runs.glob("*/*/best.pt")}


def test_missing_checkpoints_name_the_command(tmp_path, cli):
    p = cli("tsne", *SYN, "--runs-dir", tmp_path / "runs", check=2)
    assert "axcnn train --model lenet5 --dataset synthetic --stage exact" in p.stderr
    assert "--train-if-missing" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    bad = cli("tsne", *SYN, "--runs-dir", tmp_path / "runs", "--components", "4D", check=2)
    assert "2D, 3D or 2D+3D" in bad.stderr


def test_train_if_missing_artefacts_flips_and_modes(tmp_path, cli):
    runs = tmp_path / "runs"
    p = cli("tsne", *SYN, *FAST, "--runs-dir", runs, "--train-if-missing", "--train-epochs", "1",
            "--train-subset", "300", "--lut", "builtin:drum3", "--retrain", "none", "--components", "2D+3D",
            "--show-misclassified", check=0)
    base = runs / "lenet5-synthetic"
    assert {"exact", "quantized-8u"} <= {d.name for d in base.iterdir()}
    assert any(d.name.startswith("approximate-8u-drum3_8u-") and d.name.endswith("-noretrain") for d in base.iterdir())
    (out,) = _dirs(p.stdout)
    assert out.parent == base / "tsne" and out.name.startswith("penultimate-aligned-")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete" and meta["reference"] == "exact"
    tags = [s["tag"] for s in meta["stages"]]
    assert tags == ["exact", "quantized", "approximate_drum3_8u"]
    arts = {t: load_artifact(out / "artifacts" / f"{t}.npz") for t in tags}
    for t, a in arts.items():
        assert set(SEED_KEYS) <= set(a), set(SEED_KEYS) - set(a)
        assert a["X_2d"].shape == (160, 2) and a["X_3d"].shape == (160, 3)
        assert np.all(np.isfinite(a["X_2d"])) and a["test_mask"].sum() == 120 and not a["test_mask"][:40].any()
        assert a["output_tag"] == t and a["feature_layer_path"] == "forward_features"
        assert a["image_shape"] == (1, 32, 32) and a["X_test_pixels"].shape == (120, 1024)
        assert a["X_test_pixels"].dtype == np.uint8
        np.testing.assert_array_equal(a["test_indices"], arts["exact"]["test_indices"])  # same samples
        np.testing.assert_array_equal(a["y_test_sub"], arts["exact"]["y_test_sub"])
        acc = 100 * float((a["y_pred_sub"] == a["y_test_sub"]).mean())
        assert meta["summary"]["accuracy"][t] == pytest.approx(acc)
    assert arts["approximate_drum3_8u"]["lut_name"] == "drum3_8u"
    # aligned: the quantized map starts from the exact one and stays close to it
    q = next(s for s in meta["stages"] if s["tag"] == "quantized")["summary"]
    assert q["method_2d"] == "aligned" and q["median_displacement_2d"] < 0.5
    flips = json.loads((out / "flips.json").read_text())["pairs"]
    assert [(f["a"], f["b"]) for f in flips] == [("exact", "quantized"), ("exact", "approximate_drum3_8u"),
                                                 ("quantized", "approximate_drum3_8u")]
    ex, ap = arts["exact"], arts["approximate_drum3_8u"]
    broke = int(((ex["y_pred_sub"] == ex["y_test_sub"]) & (ap["y_pred_sub"] != ap["y_test_sub"])).sum())
    assert flips[1]["counts"]["right_to_wrong"] == broke
    for f in flips:
        assert sum(f["counts"].values()) == 120
        assert sum(r["right_to_wrong"] for r in f["per_class"]) == f["counts"]["right_to_wrong"]
        rows = list(csv.DictReader(open(out / f"flips_{f['a']}__{f['b']}.csv")))
        assert sum(int(r["n"]) for r in rows) == 120
    assert len((out / "predictions.csv").read_text().splitlines()) == 121
    for fig in ("exact_2d.png", "exact_3d.png", "stages_2d.png", "flips_exact__approximate_drum3_8u.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    assert all((out / f).is_file() for f in meta["figures"])
    from axcnn.lut import load_lut
    assert load_lut(out / "luts" / "approximate_drum3_8u.npz") == load_lut("builtin:drum3@8u")

    # a finished analysis is not redone; --force redoes it without touching any checkpoint
    before = _checkpoint_hashes(runs)
    again = cli("tsne", *SYN, *FAST, "--runs-dir", runs, "--components", "2D+3D", "--show-misclassified", check=0)
    assert "[cached]" in again.stdout and _dirs(again.stdout) == [out]
    cli("tsne", *SYN, *FAST, "--runs-dir", runs, "--components", "2D+3D", "--force", check=0)
    assert _checkpoint_hashes(runs) == before
    assert len(before) == 3

    # pixels: one feature space for every stage, so one shared map
    px = cli("tsne", *SYN, *FAST, "--runs-dir", runs, "--feature-space", "pixels",
             "--stages", "exact", "approximate", check=0)
    (pdir,) = _dirs(px.stdout)
    pa = [load_artifact(f) for f in sorted((pdir / "artifacts").glob("*.npz"))]
    assert len(pa) == 2 and pa[0]["feature_space"] == "pixels"
    np.testing.assert_array_equal(pa[0]["X_2d"], pa[1]["X_2d"])
    # independent fits of a named module, two layers in one call
    ind = cli("tsne", *SYN, *FAST, "--runs-dir", runs, "--layer", "conv2", "logits", "--align", "independent",
              "--stages", "exact", "quantized", "--no-figures", check=0)
    dirs = _dirs(ind.stdout)
    assert [d.name.split("-")[0] for d in dirs] == ["conv2", "logits"]
    assert all("-independent-" in d.name for d in dirs)
    a = load_artifact(dirs[0] / "artifacts" / "exact.npz")
    assert a["feature_layer_path"] == "features.4" and a["feature_layer_requested"] == "conv2"
    assert not (dirs[0] / "figures").exists()
