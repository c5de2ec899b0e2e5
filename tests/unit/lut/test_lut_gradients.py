"""Gradient tables for error-aware retraining."""

from __future__ import annotations

import numpy as np
import pytest

from axcnn.errors import ConfigError
from axcnn.lut import (DEFAULT_WINDOW, MultiplierLUT, builtin, exact_table, gradient_fractions,
                       gradient_tables, operand_values)


@pytest.mark.parametrize("window", [1, 2, 3, 5, 40])
@pytest.mark.parametrize("bits,w_bits,signed", [(4, 4, False), (4, 4, True), (8, 8, False), (8, 8, True), (3, 6, True)])
def test_exact_lut_gives_w_and_a(window, bits, w_bits, signed):
    lut = MultiplierLUT(exact_table(bits, w_bits, signed), signed=signed)
    dA, dW = gradient_tables(lut, window)
    a = operand_values(bits, signed)[:, None]
    w = operand_values(w_bits, signed)[None, :]
    assert dA.dtype == np.float32 and dW.dtype == np.float32
    assert dA.shape == dW.shape == lut.table.shape
    assert np.array_equal(dA, np.broadcast_to(w, dA.shape).astype(np.float32))
    assert np.array_equal(dW, np.broadcast_to(a, dW.shape).astype(np.float32))


@pytest.mark.parametrize("const", [7, -3])
@pytest.mark.parametrize("window", [1, 2, 4])
def test_constant_offset_has_exact_gradients(const, window):
    t = exact_table(4, 4, True) + const
    dA, dW = gradient_tables(MultiplierLUT(t, signed=True), window)
    e_dA, e_dW = gradient_tables(builtin("exact", bits=4, signed=True), window)
    assert np.array_equal(dA, e_dA)
    assert np.array_equal(dW, e_dW)


def test_central_difference_by_hand():
    t = exact_table(3, 3, False)   # 8x8
    t[4, 5] += 6                    # a bump at a=4, w=5
    lut = MultiplierLUT(t)
    dA, dW = gradient_tables(lut, 2)
    # interior, window 2: (L[a+2] - L[a-2]) / 4
    assert dA[2, 5] == pytest.approx((t[4, 5] - t[0, 5]) / 4)       # = 5 + 6/4
    assert dA[6, 5] == pytest.approx((t[7, 5] - t[4, 5]) / 3)       # cut at the border: a+2 -> 7
    assert dA[0, 5] == pytest.approx((t[2, 5] - t[0, 5]) / 2)       # one-sided at a=0
    assert dA[4, 5] == pytest.approx((t[6, 5] - t[2, 5]) / 4)       # the bump's own cell: exact w
    assert dW[4, 3] == pytest.approx((t[4, 5] - t[4, 1]) / 4)
    assert dW[4, 7] == pytest.approx((t[4, 7] - t[4, 5]) / 2)
    assert dA[2, 5] != 5  # the bump shows in the derivative


def test_window_one_is_plain_central_difference():
    lut = builtin("drum3", bits=5)
    t = lut.table.astype(np.float64)
    dA, dW = gradient_tables(lut, 1)
    assert np.allclose(dA[1:-1], (t[2:] - t[:-2]) / 2)
    assert np.allclose(dA[0], t[1] - t[0]) and np.allclose(dA[-1], t[-1] - t[-2])
    assert np.allclose(dW[:, 1:-1], (t[:, 2:] - t[:, :-2]) / 2)


def test_approximate_lut_differs_from_exact():
    dA, _ = gradient_tables(builtin("mitchell", bits=6), DEFAULT_WINDOW)
    exact_dA, _ = gradient_tables(builtin("exact", bits=6), DEFAULT_WINDOW)
    assert not np.array_equal(dA, exact_dA)
    assert np.all(np.isfinite(dA))


@pytest.mark.parametrize("window", [0, -1, 1.5, "2", None])
def test_bad_window(window):
    with pytest.raises(ConfigError):
        gradient_tables(builtin("exact", bits=4), window)


@pytest.mark.parametrize("window", [1, 2, 16, 200])
@pytest.mark.parametrize("name,bits,signed", [("exact", 8, False), ("drum4", 8, False),
                                              ("mitchell", 8, True), ("trunc6", 4, True)])
def test_fractions_reproduce_the_tables(window, name, bits, signed):
    """gradient_fractions is the exact integer form the GPU kernels gather: numerators are
    differences of two LUT entries, denominators the window width per index."""
    lut = builtin(name, bits=bits, signed=signed)
    num_a, den_a, num_w, den_w = gradient_fractions(lut, window)
    dA, dW = gradient_tables(lut, window)
    assert num_a.dtype == num_w.dtype == np.int64 and num_a.shape == lut.table.shape
    assert np.array_equal((num_a / den_a[:, None]).astype(np.float32), dA)
    assert np.array_equal((num_w / den_w[None, :]).astype(np.float32), dW)
    assert den_a.min() >= 1 and den_a.max() <= min(2 * window, lut.table.shape[0] - 1)
    t = lut.table.astype(np.int64)
    assert num_a[0, 3] == t[min(window, t.shape[0] - 1), 3] - t[0, 3]


def test_fractions_bad_window():
    with pytest.raises(ConfigError):
        gradient_fractions(builtin("exact", bits=4), 0)
