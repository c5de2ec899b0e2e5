"""Error metrics of a multiplier LUT against the exact product.

All metrics use the error ``E = LUT - exact`` over the operand values the table represents:

- ``mae``  mean |E| over all pairs (the seed's ``mean_ae``)
- ``wce``  worst-case error, max |E| (the seed's ``max_ae``)
- ``mred`` mean relative error distance, mean |E| / |exact| over pairs with exact != 0
- ``ep``   error probability, % of pairs with E != 0
- ``bias`` mean signed error (positive: the multiplier over-estimates)
- ``mse``  mean E^2
- ``nmed`` mae divided by the largest |exact product|

``weighted_metrics`` weights the same quantities by an operand histogram (a model's recorded
(activation, weight) co-occurrence counts); its ``mae`` is the seed's ``mean_ae_cnn``.
"""

from __future__ import annotations

import numpy as np

from ..errors import LUTError
from .core import MultiplierLUT, bits_for_size

METRIC_KEYS = ("mae", "wce", "mred", "ep", "bias", "mse", "nmed")


def lut_metrics(lut: MultiplierLUT) -> dict[str, float]:
    """Uniform-distribution error metrics of ``lut`` (all operand pairs equally likely)."""
    err = lut.error()
    exact = lut.exact()
    abs_err = np.abs(err)
    nz = exact != 0
    max_exact = float(np.abs(exact).max()) or 1.0
    return {
        "mae": float(abs_err.mean()),
        "wce": float(abs_err.max()),
        "mred": float((abs_err[nz] / np.abs(exact[nz])).mean()),
        "ep": float(100.0 * np.count_nonzero(err) / err.size),
        "bias": float(err.mean()),
        "mse": float((err.astype(np.float64) ** 2).mean()),
        "nmed": float(abs_err.mean() / max_exact),
    }


def _as_probability(lut: MultiplierLUT, hist: np.ndarray) -> np.ndarray:
    h = np.asarray(hist)
    if h.ndim == 3:  # (channels, a, w)
        h = h.sum(axis=0)
    if h.shape != lut.table.shape:
        raise LUTError(
            f"operand histogram has shape {np.asarray(hist).shape}; LUT '{lut.name}' needs "
            f"{lut.table.shape} (or (channels, *{lut.table.shape})): record the histogram at "
            f"{lut.a_bits}x{lut.w_bits} bits or rebin it with axcnn.lut.rebin_histogram"
        )
    h = h.astype(np.float64)
    if not np.all(np.isfinite(h)) or h.min() < 0:
        raise LUTError("operand histogram has negative, NaN or infinite counts")
    total = h.sum()
    if total <= 0:
        raise LUTError("operand histogram is empty (all counts are zero)")
    return h / total


def weighted_metrics(lut: MultiplierLUT, hist: np.ndarray) -> dict[str, float]:
    """Workload-weighted error metrics; ``hist`` is a (2^a, 2^w) or (C, 2^a, 2^w) count array."""
    p = _as_probability(lut, hist)
    err = lut.error().astype(np.float64)
    exact = lut.exact()
    abs_err = np.abs(err)
    nz = exact != 0
    pnz = p[nz].sum()
    seen = p > 0
    return {
        "mae": float((abs_err * p).sum()),
        "bias": float((err * p).sum()),
        "mse": float((err**2 * p).sum()),
        "mred": float((abs_err[nz] / np.abs(exact[nz]) * p[nz]).sum() / pnz) if pnz > 0 else 0.0,
        "ep": float(100.0 * p[err != 0].sum()),
        "wce": float(abs_err[seen].max()),
    }


def weighted_mae(lut: MultiplierLUT, hist: np.ndarray) -> float:
    """The seed's ``mean_ae_cnn``: sum of |LUT - exact| weighted by the normalised histogram."""
    return weighted_metrics(lut, hist)["mae"]


def rebin_histogram(hist: np.ndarray, to_a_bits: int, to_w_bits: int | None = None) -> np.ndarray:
    """Sum a (.., 2^A, 2^W) histogram into coarser (.., 2^a, 2^w) bins by dropping low bits.

    Code c of A bits falls into bin ``c >> (A - a)``, the top ``a`` bits (for signed codes in
    offset order this is the same arithmetic shift). Use it to weigh a b-bit multiplier with
    an operand distribution recorded at more bits.
    """
    h = np.asarray(hist)
    to_w_bits = to_a_bits if to_w_bits is None else to_w_bits
    A = bits_for_size(h.shape[-2], "histogram rows")
    W = bits_for_size(h.shape[-1], "histogram columns")
    if to_a_bits > A or to_w_bits > W:
        raise LUTError(f"cannot rebin a {A}x{W}-bit histogram to more bits ({to_a_bits}x{to_w_bits})")
    fa, fw = 1 << (A - to_a_bits), 1 << (W - to_w_bits)
    shape = h.shape[:-2] + (1 << to_a_bits, fa, 1 << to_w_bits, fw)
    return h.reshape(shape).sum(axis=(-3, -1))
