"""LUT error metrics: uniform and workload-weighted, histogram rebinning."""

from __future__ import annotations

import numpy as np
import pytest

from axcnn.errors import LUTError
from axcnn.lut import (METRIC_KEYS, MultiplierLUT, builtin, exact_table, lut_metrics,
                       rebin_histogram, weighted_mae, weighted_metrics)

EXACT_EVOAPPROX = ("mul8u_1JFF", "mul8s_1KV8")


def test_evoapprox_metrics_match_the_json(evoapprox, evoapprox_name):
    table, info = evoapprox[evoapprox_name]
    lut = MultiplierLUT(table, signed=info["signed"], name=evoapprox_name)
    m = lut_metrics(lut)
    assert set(m) == set(METRIC_KEYS)
    assert m["mae"] == pytest.approx(info["mae"], rel=1e-9, abs=1e-9)
    assert m["wce"] == pytest.approx(info["wce"], rel=1e-12, abs=0)
    assert m["ep"] == pytest.approx(info["ep"], rel=1e-9, abs=1e-9)
    assert lut.is_exact() == (evoapprox_name in EXACT_EVOAPPROX)


def test_evoapprox_set_is_complete(evoapprox):
    assert len(evoapprox) == 12
    assert set(EXACT_EVOAPPROX) <= set(evoapprox)
    for name, (table, info) in evoapprox.items():
        assert table.shape == (256, 256)
        assert info["signed"] == name.startswith("mul8s")


def test_evoapprox_exact_tables_give_zeros(evoapprox):
    for name in EXACT_EVOAPPROX:
        table, info = evoapprox[name]
        m = lut_metrics(MultiplierLUT(table, signed=info["signed"]))
        assert all(v == 0 for v in m.values()), (name, m)


@pytest.mark.parametrize("bits,signed", [(8, False), (8, True), (4, True), (3, False)])
def test_exact_metrics_are_zero(bits, signed):
    m = lut_metrics(builtin("exact", bits=bits, signed=signed))
    assert m == {k: 0.0 for k in METRIC_KEYS}


def test_constant_offset_metrics():
    t = exact_table(8, 8, False) + 3
    m = lut_metrics(MultiplierLUT(t))
    assert m["mae"] == 3 and m["wce"] == 3 and m["bias"] == 3 and m["mse"] == 9
    assert m["ep"] == 100.0
    assert m["nmed"] == pytest.approx(3 / 65025)
    exact = exact_table(8, 8, False)
    nz = exact != 0
    assert m["mred"] == pytest.approx(np.mean(3 / exact[nz]))


def test_bias_sign():
    assert lut_metrics(builtin("trunc6", bits=8))["bias"] < 0       # truncation under-estimates
    assert lut_metrics(MultiplierLUT(exact_table(6, 6, False) + 1))["bias"] > 0
    t = exact_table(6, 6, True)
    t[40, 40] -= 10  # one cell below the exact product
    m = lut_metrics(MultiplierLUT(t, signed=True))
    assert m["bias"] == pytest.approx(-10 / 4096)
    assert m["ep"] == pytest.approx(100 / 4096)
    assert m["wce"] == 10


def test_mae_by_hand():
    t = exact_table(2, 2, False)
    t[3, 3] = 5     # exact 9: |E| = 4
    t[1, 2] = 3     # exact 2: |E| = 1
    m = lut_metrics(MultiplierLUT(t))
    assert m["mae"] == pytest.approx(5 / 16)
    assert m["wce"] == 4
    assert m["bias"] == pytest.approx(-3 / 16)
    assert m["mse"] == pytest.approx(17 / 16)
    assert m["mred"] == pytest.approx((4 / 9 + 1 / 2) / 9)   # 9 non-zero exact products
    assert m["ep"] == pytest.approx(100 * 2 / 16)


# --- weighted metrics ------------------------------------------------------------------------

@pytest.fixture(params=[("drum4", False), ("mitchell", True), ("trunc5", False)])
def approx8(request):
    name, signed = request.param
    return builtin(name, bits=8, signed=signed)


def test_uniform_histogram_equals_uniform_metrics(approx8):
    hist = np.full((256, 256), 7, dtype=np.int64)
    wm = weighted_metrics(approx8, hist)
    m = lut_metrics(approx8)
    assert weighted_mae(approx8, hist) == pytest.approx(m["mae"], rel=1e-12)
    for k in ("mae", "bias", "mse", "mred", "ep", "wce"):
        assert wm[k] == pytest.approx(m[k], rel=1e-9, abs=1e-12), k


def test_one_hot_histogram_is_that_cell(approx8):
    err = approx8.error()
    cells = [(0, 0), (255, 255), (100, 37), (3, 200)]
    cells.append(tuple(int(i) for i in np.unravel_index(np.abs(err).argmax(), err.shape)))
    for i, j in cells:
        hist = np.zeros((256, 256))
        hist[i, j] = 5
        assert weighted_mae(approx8, hist) == pytest.approx(abs(err[i, j]))
        wm = weighted_metrics(approx8, hist)
        assert wm["bias"] == pytest.approx(err[i, j])
        assert wm["wce"] == abs(err[i, j])
        assert wm["ep"] == (100.0 if err[i, j] else 0.0)


def test_weighted_mae_by_hand():
    t = exact_table(2, 2, False)
    t[3, 3] = 5     # |E| = 4
    lut = MultiplierLUT(t)
    hist = np.zeros((4, 4))
    hist[3, 3] = 1
    hist[2, 2] = 3
    assert weighted_mae(lut, hist) == pytest.approx(1.0)   # (1*4 + 3*0) / 4


def test_three_d_histogram_sums_channels(approx8, rng):
    h3 = rng.integers(0, 5, size=(3, 256, 256))
    a = weighted_metrics(approx8, h3)
    b = weighted_metrics(approx8, h3.sum(axis=0))
    assert a == pytest.approx(b)
    # and differs from using only one channel (the sum matters)
    assert weighted_mae(approx8, h3[0]) != pytest.approx(a["mae"], rel=1e-12)


@pytest.mark.parametrize("shape", [(255, 256), (16, 16), (256,), (2, 2, 256, 256)])
def test_wrong_shape_histogram(shape):
    lut = builtin("drum4", bits=8)
    with pytest.raises(LUTError, match="shape"):
        weighted_mae(lut, np.ones(shape))


def test_bad_histogram_counts():
    lut = builtin("drum4", bits=4)
    with pytest.raises(LUTError):
        weighted_mae(lut, np.zeros((16, 16)))
    neg = np.ones((16, 16))
    neg[0, 0] = -1
    with pytest.raises(LUTError):
        weighted_mae(lut, neg)
    nan = np.ones((16, 16))
    nan[1, 1] = np.nan
    with pytest.raises(LUTError):
        weighted_mae(lut, nan)


# --- rebinning ---------------------------------------------------------------------------------

def test_rebin_histogram_sums_blocks(rng):
    h = rng.integers(0, 100, size=(256, 256))
    r = rebin_histogram(h, 4)
    assert r.shape == (16, 16)
    for i, j in [(0, 0), (15, 15), (3, 11), (8, 0)]:
        assert r[i, j] == h[16 * i:16 * i + 16, 16 * j:16 * j + 16].sum()
    assert r.sum() == h.sum()
    # brute force over every code
    brute = np.zeros((16, 16), dtype=np.int64)
    for a in range(256):
        np.add.at(brute[a >> 4], np.arange(256) >> 4, h[a])
    assert np.array_equal(r, brute)


def test_rebin_mixed_and_channels(rng):
    h = rng.integers(0, 10, size=(3, 256, 64))
    r = rebin_histogram(h, 2, 3)
    assert r.shape == (3, 4, 8)
    assert r[2, 1, 5] == h[2, 64:128, 40:48].sum()
    assert np.array_equal(rebin_histogram(h, 8, 6), h)  # same widths: unchanged
    with pytest.raises(LUTError):
        rebin_histogram(h, 8, 7)  # more bits than recorded
    with pytest.raises(LUTError):
        rebin_histogram(np.ones((10, 16)), 2)


def test_rebinned_histogram_weighs_a_coarser_lut(rng):
    h8 = rng.integers(0, 10, size=(256, 256))
    lut4 = builtin("trunc3", bits=4)
    assert weighted_mae(lut4, rebin_histogram(h8, 4)) == pytest.approx(
        weighted_mae(lut4, rebin_histogram(h8, 4, 4)))
    with pytest.raises(LUTError):
        weighted_mae(lut4, h8)
