"""Operand heat maps and LUT-error overlays (matplotlib, Agg).

Axes as in the LUT: x = weight operand (column), y = activation operand (row), in operand
*values* (signed codes run from -2^(b-1)). Counts use a log colour scale; cells with no
multiplication are left blank (not raised to the smallest count as the seed did).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..lut import MultiplierLUT
from .lut_plots import _pyplot


def _extent(fmt: dict, shape) -> tuple[float, float, float, float]:
    a0 = -(1 << (fmt["a_bits"] - 1)) if fmt.get("signed") else 0
    w0 = -(1 << (fmt["w_bits"] - 1)) if fmt.get("signed") else 0
    return (w0 - 0.5, w0 + shape[1] - 0.5, a0 + shape[0] - 0.5, a0 - 0.5)


def _log_image(ax, counts: np.ndarray, extent, norm=None, cmap: str = "viridis"):
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    c = np.asarray(counts, dtype=np.float64)
    c = np.where(np.isfinite(c), c, 0.0)
    masked = np.ma.masked_less_equal(c, 0)
    if norm is None:
        pos = c[c > 0]
        norm = LogNorm(vmin=pos.min(), vmax=max(pos.max(), pos.min() * 10)) if pos.size else LogNorm(1, 10)
    cm = plt.get_cmap(cmap).with_extremes(bad="white")
    return ax.imshow(masked, cmap=cm, norm=norm, origin="upper", aspect="auto",
                     interpolation="nearest", extent=extent)


def _save(fig, path, dpi):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


def plot_operand_heatmap(counts: np.ndarray, path: str | Path, fmt: dict, *, title: str = "",
                         dpi: int = 150) -> Path:
    """One (2^a, 2^w) count matrix, log colour scale."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    im = _log_image(ax, counts, _extent(fmt, counts.shape))
    fig.colorbar(im, ax=ax, label="multiplications (log scale)")
    ax.set_xlabel("Weights (operand B)")
    ax.set_ylabel("Activations (operand A)")
    total = float(np.sum(counts))
    a0 = (1 << (fmt["a_bits"] - 1)) if fmt.get("signed") else 0
    zero = float(np.sum(counts[a0])) / total if total else 0.0
    ax.set_title(f"{title}\nactivation 0: {100 * zero:.1f}% of products; "
                 f"{100 * float((np.asarray(counts) > 0).mean()):.1f}% of cells used", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_channel_grid(hist: np.ndarray, path: str | Path, fmt: dict, *, title: str = "",
                      max_channels: int = 16, dpi: int = 150) -> Path:
    """One small log-scale map per output channel (the first ``max_channels``), one colour scale."""
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    n = min(len(hist), max_channels)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows + 0.6), squeeze=False)
    pos = hist[:n][hist[:n] > 0]
    norm = LogNorm(vmin=pos.min(), vmax=max(pos.max(), pos.min() * 10)) if pos.size else LogNorm(1, 10)
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        im = _log_image(ax, hist[i], _extent(fmt, hist.shape[1:]), norm=norm)
        ax.set_title(f"channel {i}", fontsize=8)
        ax.tick_params(labelsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="multiplications (log)", shrink=0.8)
    fig.suptitle(f"{title} (first {n} of {len(hist)} channels; x = weights, y = activations)", fontsize=10)
    return _save(fig, path, dpi)


def mass_thresholds(p: np.ndarray, fractions=(0.5, 0.9, 0.99)) -> list[float]:
    """Count levels t such that the cells with p >= t hold each fraction of the total."""
    flat = np.sort(np.asarray(p, np.float64).ravel())[::-1]
    total = flat.sum()
    if total <= 0:
        return []
    cum = np.cumsum(flat) / total
    return [float(flat[min(np.searchsorted(cum, f), len(flat) - 1)]) for f in fractions]


def _box_blur(p: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window (edges clamped): a smooth density to draw contours of."""
    if r < 1:
        return p
    k = 2 * r + 1
    padded = np.pad(p, r, mode="edge")
    c = padded.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def plot_lut_overlay(lut: MultiplierLUT, counts: np.ndarray, path: str | Path, *, title: str = "",
                     dpi: int = 150) -> Path:
    """Three panels: where the operands fall; the LUT's |error| with the cells no product
    falls in faded and the region holding 90 % of the products outlined; and |error| x probability, whose sum is the
    workload-weighted mean absolute error (the seed's mean_ae_cnn)."""
    from ..lut import weighted_metrics

    plt = _pyplot()
    counts = np.asarray(counts, np.float64)
    p = counts / counts.sum()
    err = np.abs(lut.error().astype(np.float64))
    fmt = {"a_bits": lut.a_bits, "w_bits": lut.w_bits, "signed": lut.signed}
    ext = _extent(fmt, err.shape)
    m = weighted_metrics(lut, counts)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    im0 = _log_image(axes[0], counts, ext)
    fig.colorbar(im0, ax=axes[0], label="multiplications (log)")
    axes[0].set_title("operand distribution", fontsize=10)
    im1 = axes[1].imshow(err, cmap="Reds", origin="upper", aspect="auto", interpolation="nearest", extent=ext)
    fig.colorbar(im1, ax=axes[1], label="|approx - exact|")
    unused = np.zeros(err.shape + (4,))
    unused[..., :3] = 1.0
    unused[..., 3] = np.where(counts > 0, 0.0, 0.8)   # fade the cells no product falls in
    axes[1].imshow(unused, origin="upper", aspect="auto", interpolation="nearest", extent=ext)
    smooth = _box_blur(p, max(1, err.shape[0] // 64))
    levels = sorted(set(mass_thresholds(smooth, (0.9,))))
    if levels and levels[0] > 0:
        w0, w1, a1, a0 = ext
        xs = np.linspace(w0 + 0.5, w1 - 0.5, err.shape[1])
        ys = np.linspace(a0 + 0.5, a1 - 0.5, err.shape[0])
        axes[1].contour(xs, ys, smooth, levels=levels, colors=["#1f77b4"], linewidths=1.0)
    axes[1].set_title("LUT |error| where products fall (unused cells faded;\nblue: region of 90% of products)", fontsize=10)
    contrib = err * p
    im2 = _log_image(axes[2], contrib, ext, cmap="magma")
    fig.colorbar(im2, ax=axes[2], label="|error| x probability (log)")
    axes[2].set_title(f"error contribution: sum = {m['mae']:.4g} (mean_ae_cnn)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("Weights (operand B)")
        ax.set_ylabel("Activations (operand A)")
    fig.suptitle(f"{title}: weighted MAE {m['mae']:.4g} (uniform {float(err.mean()):.4g}), "
                 f"EP {m['ep']:.1f}%, WCE seen {m['wce']:.0f}", fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi)
