"""Static figures drawn from artefact dicts alone, and the helpers behind the heat-map overlays."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from axcnn.analysis.flips import flip_kinds  # noqa: E402
from axcnn.viz import tsne_plots as tp  # noqa: E402
from axcnn.viz.heatmap_plots import _box_blur, mass_thresholds  # noqa: E402


def _art(tag, pred_wrong=(), seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(12) % 3
    pred = y.copy()
    pred[list(pred_wrong)] = (y[list(pred_wrong)] + 1) % 3
    return {"X_2d": rng.normal(size=(16, 2)), "X_3d": rng.normal(size=(16, 3)),
            "test_mask": np.r_[np.zeros(4, bool), np.ones(12, bool)], "y_test_sub": y, "y_pred_sub": pred,
            "X_test_pixels": rng.integers(0, 255, (12, 3 * 4 * 4)).astype(np.uint8), "image_shape": (3, 4, 4),
            "classes": ["a", "b", "c"], "output_tag": tag, "title": tag, "test_indices": np.arange(50, 62)}


def test_figures_from_artefacts(tmp_path):
    a, b = _art("exact"), _art("approx", pred_wrong=(1, 5), seed=1)
    paths = [tp.plot_stage_2d(b, tmp_path / "s2.png", dpi=30), tp.plot_stage_3d(b, tmp_path / "s3.png", dpi=30),
             tp.plot_stages_grid([a, b], tmp_path / "grid.png", shared_limits=True, dpi=30),
             tp.plot_flips(a, b, flip_kinds(a["y_test_sub"], a["y_pred_sub"], b["y_pred_sub"]),
                           tmp_path / "flips.png", draw_moves=True, dpi=30),
             tp.plot_misclassified(b, tmp_path / "mis.png", dpi=30)]
    for p in paths:
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tp.plot_misclassified(a, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    img, cmap = tp.image_for_display(b["X_test_pixels"][0], (3, 4, 4))
    assert img.shape == (4, 4, 3) and cmap is None and img.min() == 0 and img.max() == 1


def test_mass_thresholds_and_blur():
    p = np.array([[0.5, 0.3], [0.15, 0.05]])
    t50, t90, t99 = mass_thresholds(p, (0.5, 0.9, 0.99))
    assert t50 == 0.5 and t90 == 0.15 and t99 == 0.05
    assert p[p >= t90].sum() >= 0.9
    assert mass_thresholds(np.zeros((2, 2))) == []
    q = np.random.default_rng(0).random((9, 9))
    blurred = _box_blur(q, 1)
    assert blurred.shape == q.shape and blurred[4, 4] == pytest.approx(q[3:6, 3:6].mean())
    assert np.array_equal(_box_blur(q, 0), q)
