"""Gradient tables for error-aware retraining, derived from the LUT itself.

For the multiplier f(a, w) = LUT[a, w] the error-aware backward pass uses the partial
derivatives of f instead of those of the exact product (w and a). They are estimated by
central differences with half-width h (the ``window``), which equals the mean of the h*2
forward differences around the point, i.e. a box-smoothed derivative:

    dA[a, w] = (LUT[min(a+h, amax), w] - LUT[max(a-h, amin), w]) / (min(a+h, amax) - max(a-h, amin))
    dW[a, w] = (LUT[a, min(w+h, wmax)] - LUT[a, max(w-h, wmin)]) / (min(w+h, wmax) - max(w-h, wmin))

with the difference taken in operand values (index distance = value distance). At the borders
the window is cut short (one-sided differences). For the exact multiplier these tables are
exactly w and a, so error-aware retraining with an exact LUT equals STE. Writing
LUT = exact + E, dA = w + dE/da: the seed's rule ``(w + z_w) - der_x`` with der_x the
derivative of (exact - approx), now taken from the loaded LUT and divided by the step.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .core import MultiplierLUT

DEFAULT_WINDOW = 2


def _central_difference(table: np.ndarray, axis: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(numerator, denominator) of the central difference along ``axis``: an integer table
    and the window width per index along that axis."""
    n = table.shape[axis]
    idx = np.arange(n)
    hi = np.minimum(idx + h, n - 1)
    lo = np.maximum(idx - h, 0)
    return np.take(table, hi, axis=axis) - np.take(table, lo, axis=axis), hi - lo


def _check_window(window) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"gradient window must be an integer >= 1, got {window!r}")
    return int(window)


def gradient_fractions(lut: MultiplierLUT | np.ndarray, window: int = DEFAULT_WINDOW):
    """The gradient tables of a LUT (or of its integer table) as exact fractions:
    ``(num_a, den_a, num_w, den_w)`` with ``dA = num_a / den_a[:, None]`` and
    ``dW = num_w / den_w[None, :]``; numerators are int64 tables of the LUT's shape
    (differences of two LUT entries), denominators int64 vectors. GPU kernels gather the
    narrow integer numerators and divide once per sum."""
    h = _check_window(window)
    t = np.asarray(lut.table if isinstance(lut, MultiplierLUT) else lut, dtype=np.int64)
    num_a, den_a = _central_difference(t, 0, h)
    num_w, den_w = _central_difference(t, 1, h)
    return num_a, den_a, num_w, den_w


def gradient_tables(lut: MultiplierLUT, window: int = DEFAULT_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(dLUT/da, dLUT/dw) as float32 tables of the LUT's shape."""
    num_a, den_a, num_w, den_w = gradient_fractions(lut, window)
    return ((num_a / den_a[:, None].astype(np.float64)).astype(np.float32),
            (num_w / den_w[None, :].astype(np.float64)).astype(np.float32))
