"""Error-map figures of a multiplier LUT (x = weight operand, y = activation operand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..lut import MultiplierLUT, lut_metrics

KINDS = ("abs", "signed", "relative", "output")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'axcnn[viz]'") from None
    return plt


def plot_error_map(lut: MultiplierLUT, path: str | Path, kind: str = "abs", dpi: int = 150) -> Path:
    """Write a PNG heat map of the LUT's error (``abs``, ``signed``, ``relative`` %) or output."""
    if kind not in KINDS:
        raise ConfigError(f"unknown plot kind '{kind}'; expected one of {', '.join(KINDS)}")
    plt = _pyplot()
    err = lut.error().astype(np.float64)
    if kind == "abs":
        data, cmap, label = np.abs(err), "Reds", "|approx - exact|"
    elif kind == "signed":
        lim = max(1.0, float(np.abs(err).max()))
        data, cmap, label = err, "RdBu_r", "approx - exact"
    elif kind == "relative":
        exact = np.abs(lut.exact()).astype(np.float64)
        data = np.where(exact > 0, 100.0 * np.abs(err) / np.maximum(exact, 1), 0.0)
        cmap, label = "Greens", "relative error (%)"
    else:
        data, cmap, label = lut.table.astype(np.float64), "Blues", "output"
    a_lo, a_hi = lut.a_range
    w_lo, w_hi = lut.w_range
    fig, ax = plt.subplots(figsize=(6, 5))
    kwargs = {"vmin": -lim, "vmax": lim} if kind == "signed" else {}
    im = ax.imshow(data, cmap=cmap, origin="upper", aspect="auto", interpolation="nearest",
                   extent=(w_lo - 0.5, w_hi + 0.5, a_hi + 0.5, a_lo - 0.5), **kwargs)
    fig.colorbar(im, ax=ax, label=label)
    m = lut_metrics(lut)
    ax.set_xlabel("Weights (operand B)")
    ax.set_ylabel("Activations (operand A)")
    ax.set_title(f"{lut.name} ({lut.bits_label}): MAE {m['mae']:.3g}, WCE {m['wce']:.0f}, EP {m['ep']:.1f}%",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
