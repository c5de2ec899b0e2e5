"""The explorer's path guard and figure logic (no browser needed)."""

import base64
import io
import os

import numpy as np
import pytest

from axcnn.viz.app import PathRefused, RunsView, flip_mask, image_png, safe_path, scatter_figure, shared_ranges

pytest.importorskip("plotly")


def test_safe_path_refuses_everything_outside(tmp_path):
    root = tmp_path / "runs"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret", target_is_directory=True)
    (root / "inner").symlink_to(root / "a", target_is_directory=True)
    assert safe_path(root, "a/b") == (root / "a" / "b").resolve()
    assert safe_path(root, str(root / "a")) == (root / "a").resolve()     # absolute, inside
    assert safe_path(root, "a/../a/b") == (root / "a" / "b").resolve()
    assert safe_path(root, "inner/b") == (root / "a" / "b").resolve()     # a link that stays inside
    for bad in ("../", "..", "../secret", str(tmp_path / "secret"), "/etc/passwd", "link", "link/x",
                "a/../../secret", "", "   ", "a\x00b"):
        with pytest.raises(PathRefused):
            safe_path(root, bad)


def test_runs_view_only_reads_inside(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    view = RunsView(root)
    assert view.analyses() == []
    with pytest.raises(PathRefused):
        view.analysis_dir("../")
    with pytest.raises(PathRefused):
        view.artifact(str(tmp_path / "x.npz"))
    with pytest.raises(Exception, match="not a t-SNE analysis"):
        view.analysis_dir(".")
    # an analysis directory that is a symbolic link to elsewhere is neither listed nor read
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "metadata.json").write_text('{"format": "axcnn-tsne/1", "status": "complete"}')
    (root / "m-d" / "tsne").mkdir(parents=True)
    (root / "m-d" / "tsne" / "evil").symlink_to(outside, target_is_directory=True)
    assert view.analyses() == []
    with pytest.raises(PathRefused):
        view.analysis_dir("m-d/tsne/evil")


def _art(n_train=5, n_test=8, align="aligned"):
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])[:n_test]
    return {"X_2d": rng.normal(size=(n_train + n_test, 2)).astype(np.float32),
            "X_3d": rng.normal(size=(n_train + n_test, 3)).astype(np.float32),
            "test_mask": np.r_[np.zeros(n_train, bool), np.ones(n_test, bool)],
            "y_test_sub": y, "y_pred_sub": np.where(np.arange(n_test) == 2, 0, y),
            "classes": ["a", "b", "c"], "test_indices": np.arange(100, 100 + n_test),
            "output_tag": "exact", "align": align}


def test_scatter_figure_traces_customdata_and_filters():
    art = _art()
    fig = scatter_figure(art)
    names = [t.name for t in fig.data]
    assert names[0] == "train" and "misclassified (1)" in names
    test_cd = sorted(int(v) for t in fig.data if t.name not in ("train",) and not t.name.startswith("mis")
                     for v in t.customdata)
    assert test_cd == list(range(8))                         # every test point, by its position
    assert all(isinstance(v, int) for v in fig.data[1].customdata)  # plain ints: Dash keeps them
    keep = np.zeros(8, bool)
    keep[[0, 3]] = True
    fig2 = scatter_figure(art, keep=keep, show_train=False, selected={3}, clicked=3)
    assert [t.name for t in fig2.data] == ["a", "clicked"]
    assert list(fig2.data[0].selectedpoints) == [1]
    assert fig2.data[1].customdata == (3,)
    assert scatter_figure(art, dims=3).data[0].type == "scatter3d"
    lims = shared_ranges([art, _art()])
    assert lims[0][0] < art["X_2d"][:, 0].min() and lims[1][1] > art["X_2d"][:, 1].max()


def test_flip_mask():
    y = np.array([0, 0, 1, 1])
    pl = np.array([0, 1, 1, 0])
    pr = np.array([1, 1, 1, 1])
    assert list(flip_mask("right_to_wrong", y, pl, pr)) == [True, False, False, False]
    assert list(flip_mask("wrong_to_right", y, pl, pr)) == [False, False, False, True]
    assert list(flip_mask("changed", y, pl, pr)) == [True, False, False, True]
    assert flip_mask("all", y, pl, pr).all() and flip_mask("bogus", y, pl, pr).all()


def test_image_png_roundtrip():
    from PIL import Image

    img = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    uri = image_png(img.ravel(), (3, 4, 5), size=20)
    assert uri.startswith("data:image/png;base64,")
    pil = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert pil.size == (20, 16) and pil.mode == "RGB"
    gray = image_png(np.zeros(16, np.uint8), (1, 4, 4), size=8)
    assert Image.open(io.BytesIO(base64.b64decode(gray.split(",", 1)[1]))).mode == "L"
