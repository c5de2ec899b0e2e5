"""Operand statistics -> heat maps and workload-weighted LUT errors (any bit width)."""

import csv
import json

import numpy as np
import pytest

from axcnn.analysis.heatmaps import (find_stats, histogram_for_lut, layer_summary, load_stats,
                                     lut_workload_errors, run_heatmap)
from axcnn.errors import ConfigError, DataError, LUTError
from axcnn.lut import builtin, load_lut, weighted_mae
from axcnn.nn.stats import OperandRecorder


def write_stats(path, hists, bits=4, signed=False):
    rec = OperandRecorder()
    import torch
    for name, h in hists.items():
        rec.histograms[name] = torch.as_tensor(h)
        rec.formats[name] = {"a_bits": bits, "w_bits": bits, "signed": signed, "type": "ApproxConv2d"}
    return rec.save(path)


@pytest.fixture
def stats8(tmp_path, rng):
    h1 = rng.integers(0, 50, (3, 256, 256)).astype(np.int64)
    h1[:, 0, :] += 500   # many zero activations
    h2 = np.zeros((2, 256, 256), np.int64)
    h2[:, 10, 20] = 7
    return write_stats(tmp_path / "m-d" / "stats-8u" / "operand_stats.npz", {"conv.a": h1, "conv.b": h2}, bits=8)


def test_load_and_summaries(stats8):
    st = load_stats(stats8.parent)  # a run directory works too
    assert st.layers == ["conv.a", "conv.b"]
    s = layer_summary(st.histograms["conv.b"], st.fmt("conv.b"))
    assert s["multiplications"] == 14 and s["zero_activation_fraction"] == 0.0
    assert s["occupied_fraction"] == pytest.approx(1 / 65536)
    assert s["mean_activation_code"] == 10 and s["mean_weight_code"] == 20
    h = st.histograms["conv.a"]
    a = layer_summary(h, st.fmt("conv.a"))
    assert a["zero_activation_fraction"] == pytest.approx(h[:, 0, :].sum() / h.sum())
    assert a["zero_weight_fraction"] == pytest.approx(h[:, :, 0].sum() / h.sum())


def test_workload_errors_match_direct_computation(stats8):
    st = load_stats(stats8)
    lut = builtin("builtin:drum3", bits=8)
    res = lut_workload_errors(lut, st)
    total = st.summed("conv.a") + st.summed("conv.b")
    assert res["model"]["mae"] == pytest.approx(weighted_mae(lut, total))
    # a layer whose products all fall in one cell has that cell's error
    assert res["layers"]["conv.b"]["mae"] == pytest.approx(abs(int(lut.error()[10, 20])))
    assert res["layers"]["conv.a"]["share"] + res["layers"]["conv.b"]["share"] == pytest.approx(1.0)
    assert lut_workload_errors(builtin("builtin:exact", bits=8), st)["model"]["mae"] == 0.0
    assert not res["rebinned"]


def test_lut_of_fewer_bits_uses_rebinned_histogram(stats8):
    st = load_stats(stats8)
    lut4 = load_lut("builtin:drum3@4u")
    h, rebinned = histogram_for_lut(st.summed("conv.b"), st.fmt("conv.b"), lut4)
    assert rebinned and h.shape == (16, 16) and h[10 >> 4, 20 >> 4] == 14
    res = lut_workload_errors(lut4, st, ["conv.b"])
    assert res["rebinned"] and res["model"]["mae"] == pytest.approx(abs(int(lut4.error()[0, 1])))
    with pytest.raises(LUTError, match="signed"):
        histogram_for_lut(st.summed("conv.b"), st.fmt("conv.b"), load_lut("builtin:exact@8s"))
    small = {"a_bits": 4, "w_bits": 4, "signed": False}
    with pytest.raises(LUTError, match="record the statistics at --bits 8"):
        histogram_for_lut(np.ones((16, 16)), small, builtin("builtin:exact", bits=8))


def test_run_heatmap_writes_figures_and_tables(stats8, tmp_path):
    out = tmp_path / "out"
    luts = [builtin("builtin:drum3", bits=8), load_lut("builtin:exact@4u")]
    res = run_heatmap(stats8, out, mode="both", luts=luts, max_channels=2, dpi=40, progress=False)
    files = {p.name for p in out.iterdir()}
    for f in ("heatmap.json", "operands.npz", "lut_errors.csv", "operands_conv-a.png", "operands_conv-b_channels.png",
              "operands_all.png", f"overlay_drum3_8u-{luts[0].short_hash}_all.png"):
        assert f in files, f
    meta = json.loads((out / "heatmap.json").read_text())
    assert set(meta["layers"]) == {"conv.a", "conv.b"} and len(meta["luts"]) == 2
    assert all((out / f).is_file() for f in meta["figures"])
    rows = list(csv.DictReader(open(out / "lut_errors.csv")))
    assert {r["layer"] for r in rows} == {"(model)", "conv.a", "conv.b"} and len(rows) == 6
    exact_rows = [r for r in rows if r["lut"] == "exact_4u"]
    assert all(float(r["mae"]) == 0 for r in exact_rows)
    assert load_lut(out / f"lut_drum3_8u-{luts[0].short_hash}.npz") == luts[0]
    with np.load(out / "operands.npz") as z:
        assert z["conv-a"].shape == (256, 256)
    assert res["luts"][1]["rebinned"] is True
    with pytest.raises(ConfigError, match="not in"):
        run_heatmap(stats8, out, layers=["nope"], progress=False)


def test_missing_stats_name_the_command(tmp_path):
    with pytest.raises(ConfigError, match="axcnn train --model lenet5 --dataset synthetic --conv_type 5 --bits 4"):
        find_stats(tmp_path, "lenet5", "synthetic", 4, False, False)
    with pytest.raises(DataError, match="conv_type 5"):
        load_stats(tmp_path / "nothing.npz")
