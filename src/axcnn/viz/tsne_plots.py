"""Static t-SNE figures (matplotlib, Agg): per stage, all stages side by side, flips, images.

Every function takes artefact dicts as written by :mod:`axcnn.analysis.artifacts` (so figures
can be redrawn from saved artefacts alone) and writes one PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.artifacts import test_positions
from .lut_plots import _pyplot
from .palette import MISCLASSIFIED, RIGHT_TO_WRONG, TRAIN, WRONG_TO_RIGHT, class_colors


def _limits(arts: list[dict], key: str = "X_2d", pad: float = 0.05):
    Y = np.concatenate([a[key] for a in arts if key in a])
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return lo - pad * span, hi + pad * span


def _draw_2d(ax, art: dict, *, limits=None, show_labels: bool = True, legend: bool = True,
             small: bool = False) -> None:
    Y = np.asarray(art["X_2d"])
    mask = np.asarray(art["test_mask"], bool)
    y_test = np.asarray(art["y_test_sub"])
    pred = np.asarray(art.get("y_pred_sub", y_test))
    classes = art.get("classes") or [str(c) for c in range(int(y_test.max()) + 1)]
    colors = class_colors(len(classes))
    s = 4 if small else 8
    if (~mask).any():
        ax.scatter(Y[~mask, 0], Y[~mask, 1], s=s * 0.6, c=TRAIN, alpha=0.4, linewidths=0,
                   label="train", rasterized=True)
    Yt = Y[mask]
    for c in np.unique(y_test):
        m = y_test == c
        ax.scatter(Yt[m, 0], Yt[m, 1], s=s, color=colors[int(c) % len(colors)], linewidths=0,
                   label=classes[int(c)] if int(c) < len(classes) else str(c), rasterized=True)
    wrong = pred != y_test
    if wrong.any():
        ax.scatter(Yt[wrong, 0], Yt[wrong, 1], s=s * 3, marker="x", c=MISCLASSIFIED, linewidths=0.8,
                   label=f"misclassified ({int(wrong.sum())})")
    if show_labels:
        for c in np.unique(y_test):
            m = y_test == c
            med = np.median(Yt[m], axis=0)
            ax.text(med[0], med[1], classes[int(c)] if int(c) < len(classes) else str(c),
                    fontsize=7 if small else 9, ha="center", va="center", weight="bold",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    acc = 100.0 * float((pred == y_test).mean()) if len(y_test) else 0.0
    ax.text(0.01, 0.01, f"CNN accuracy: {acc:.2f}%", transform=ax.transAxes, fontsize=8 if small else 10,
            va="bottom", ha="left")
    if limits is not None:
        ax.set_xlim(limits[0][0], limits[1][0])
        ax.set_ylim(limits[0][1], limits[1][1])
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        ax.legend(loc="upper right", fontsize=7, markerscale=1.5, framealpha=0.8)


def _save(fig, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


def plot_stage_2d(art: dict, path: str | Path, *, limits=None, dpi: int = 150) -> Path:
    """Train points grey, test points by true class, misclassified red x, class names at medians."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 8))
    _draw_2d(ax, art, limits=limits)
    ax.set_title(art.get("title", art.get("output_tag", "")), fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_stage_3d(art: dict, path: str | Path, *, dpi: int = 150) -> Path:
    """The 3-D embedding seen from one angle (the Dash explorer rotates it)."""
    plt = _pyplot()
    Y = np.asarray(art["X_3d"])
    mask = np.asarray(art["test_mask"], bool)
    y_test = np.asarray(art["y_test_sub"])
    pred = np.asarray(art.get("y_pred_sub", y_test))
    classes = art.get("classes") or []
    colors = class_colors(max(len(classes), int(y_test.max()) + 1))
    fig = plt.figure(figsize=(9, 8))
    ax = fig.add_subplot(projection="3d")
    if (~mask).any():
        ax.scatter(*Y[~mask].T, s=3, c=TRAIN, alpha=0.3, linewidths=0)
    Yt = Y[mask]
    for c in np.unique(y_test):
        m = y_test == c
        ax.scatter(*Yt[m].T, s=6, color=colors[int(c)], linewidths=0,
                   label=classes[int(c)] if int(c) < len(classes) else str(c))
    wrong = pred != y_test
    if wrong.any():
        ax.scatter(*Yt[wrong].T, s=18, marker="x", c=MISCLASSIFIED, label=f"misclassified ({int(wrong.sum())})")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(art.get("title", "") + " (3-D)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_stages_grid(arts: list[dict], path: str | Path, *, shared_limits: bool, dpi: int = 150) -> Path:
    """All stages side by side; with ``shared_limits`` (aligned maps) the axes are the same."""
    plt = _pyplot()
    n = len(arts)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 5 * rows), squeeze=False)
    limits = _limits(arts) if shared_limits else None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        _draw_2d(ax, arts[i], limits=limits, legend=False, small=True)
        ax.set_title(arts[i].get("output_tag", ""), fontsize=10)
    fig.suptitle(f"{arts[0].get('model_name', '')}: {arts[0].get('feature_layer_requested', '')} "
                 f"({arts[0].get('align', '')})", fontsize=12)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_flips(art_a: dict, art_b: dict, kinds: np.ndarray, path: str | Path, *,
               draw_moves: bool, dpi: int = 150) -> Path:
    """Stage b's map with its right->wrong (red) and wrong->right (green) test points.

    With ``draw_moves`` (aligned maps) a line joins each flipped point's position in a to its
    position in b.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 8))
    pos = test_positions(art_b)
    Yb = np.asarray(art_b["X_2d"])[pos]
    Ya = np.asarray(art_a["X_2d"])[test_positions(art_a)]
    y = np.asarray(art_b["y_test_sub"])
    classes = art_b.get("classes") or []
    colors = class_colors(max(len(classes), int(y.max()) + 1))
    ax.scatter(Yb[:, 0], Yb[:, 1], s=6, c=[colors[int(c)] for c in y], alpha=0.25, linewidths=0)
    for kind, color, label in (("right_to_wrong", RIGHT_TO_WRONG, f"right in {art_a['output_tag']}, wrong in {art_b['output_tag']}"),
                               ("wrong_to_right", WRONG_TO_RIGHT, f"wrong in {art_a['output_tag']}, right in {art_b['output_tag']}")):
        m = kinds == kind
        if draw_moves:
            for p, q in zip(Ya[m], Yb[m]):
                ax.plot([p[0], q[0]], [p[1], q[1]], color=color, lw=0.5, alpha=0.5)
        ax.scatter(Yb[m, 0], Yb[m, 1], s=26, c=color, marker="o", edgecolors="black", linewidths=0.4,
                   label=f"{label} ({int(m.sum())})")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"prediction flips {art_a['output_tag']} -> {art_b['output_tag']}", fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi)


def image_for_display(flat: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, str | None]:
    """(H, W) or (H, W, 3) float image in [0, 1] (min-max normalised) and a colormap name."""
    img = np.asarray(flat, dtype=np.float64).reshape(shape)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if shape[0] == 1:
        return img[0], "gray_r"
    return np.transpose(img[:3], (1, 2, 0)), None


def plot_misclassified(art: dict, path: str | Path, *, max_images: int = 64, dpi: int = 150) -> Path | None:
    """A grid (8 columns) of misclassified test images titled '#index / true / pred'."""
    y = np.asarray(art["y_test_sub"])
    pred = np.asarray(art["y_pred_sub"])
    wrong = np.flatnonzero(pred != y)[:max_images]
    if len(wrong) == 0 or "X_test_pixels" not in art:
        return None
    plt = _pyplot()
    classes = art.get("classes") or []
    name = (lambda c: classes[int(c)] if int(c) < len(classes) else str(int(c)))
    idx = np.asarray(art.get("test_indices", np.arange(len(y))))
    cols = 8
    rows = (len(wrong) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        img, cmap = image_for_display(art["X_test_pixels"][i], art["image_shape"])
        ax.imshow(img, cmap=cmap)
        ax.set_title(f"#{int(idx[i])}\n{name(y[i])} / {name(pred[i])}", fontsize=7, color="red")
    fig.suptitle(f"misclassified: {art.get('output_tag', '')} ({int((pred != y).sum())} of {len(y)})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)
