"""t-SNE embeddings: properties (seeded, finite, classes kept apart, alignment), PCA, metrics."""

import numpy as np
import pytest

from axcnn.analysis.embedding import (Align, TSNEParams, class_separation, displacement, embed_stages,
                                      fit_pca, fit_standard, knn_preservation)
from axcnn.errors import ConfigError

pytest.importorskip("openTSNE")

FAST = TSNEParams(n_iter=200, early_exaggeration_iter=80, seed=7, pca_dims=0)


def blobs(n_per=60, k=3, d=20, spread=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    y = np.repeat(np.arange(k), n_per)
    return (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


def test_seeded_finite_and_separable():
    X, y = blobs()
    a = fit_standard(X, 2, FAST)
    b = fit_standard(X, 2, FAST)
    assert a.Y.shape == (len(X), 2) and a.Y.dtype == np.float32
    assert np.all(np.isfinite(a.Y))
    np.testing.assert_array_equal(a.Y, b.Y)  # same seed, same map
    assert a.kl_divergence is not None and np.isfinite(a.kl_divergence)
    assert class_separation(a.Y, y) >= 0.98
    c = fit_standard(X, 2, TSNEParams(n_iter=200, early_exaggeration_iter=80, seed=8, pca_dims=0))
    assert not np.array_equal(a.Y, c.Y)  # the seed matters


def test_separable_synthetic_images_stay_apart():
    from axcnn.data.synthetic import make_synthetic

    tx, ty, *_ = make_synthetic(image_shape=(1, 16, 16), train_size=240, test_size=10, num_classes=4,
                                noise_std=0.05, max_shift=0, seed=3)
    X = tx.reshape(len(tx), -1).float().numpy() / 255.0
    emb = embed_stages({"pixels": X}, (2, 3), TSNEParams(n_iter=200, early_exaggeration_iter=80,
                                                         pca_dims=20))
    for nc in (2, 3):
        Y = emb.embeddings["pixels"][nc].Y
        assert Y.shape == (240, nc) and np.all(np.isfinite(Y))
        assert class_separation(Y, ty.numpy()) >= 0.95


def test_aligned_and_transform_keep_positions_comparable():
    X, y = blobs(n_per=50)
    rng = np.random.default_rng(1)
    X2 = X + rng.normal(size=X.shape).astype(np.float32) * 0.3   # a slightly perturbed stage
    feats = {"exact": X, "approx": X2, "same": X.copy()}
    for align in (Align.ALIGNED, Align.TRANSFORM):
        emb = embed_stages(feats, (2, 3), FAST, align)
        assert emb.embeddings["approx"][3].Y.shape == (len(X), 3)
        assert np.all(np.isfinite(emb.embeddings["approx"][3].Y))
        ref = emb.embeddings["exact"][2].Y
        moved = emb.embeddings["approx"][2]
        assert moved.method == align.value
        assert np.all(np.isfinite(moved.Y))
        assert float(np.median(displacement(moved.Y, ref))) < 0.25
        assert class_separation(moved.Y, y) >= 0.95
        same = emb.embeddings["same"][2]
        assert same.method == "reused" and np.array_equal(same.Y, ref)
    # an independent fit of a mirrored feature space is free to land anywhere; aligned is not
    flipped = {"exact": X, "approx": -X2}
    ind = embed_stages(flipped, (2,), FAST, Align.INDEPENDENT)
    ali = embed_stages(flipped, (2,), FAST, Align.ALIGNED)
    d_ind = np.median(displacement(ind.embeddings["approx"][2].Y, ind.embeddings["exact"][2].Y))
    d_ali = np.median(displacement(ali.embeddings["approx"][2].Y, ali.embeddings["exact"][2].Y))
    assert d_ali < d_ind


def test_embed_stages_checks_inputs():
    X, _ = blobs(n_per=10)
    with pytest.raises(ConfigError, match="different numbers of samples"):
        embed_stages({"a": X, "b": X[:-1]}, (2,), FAST)
    with pytest.raises(ConfigError, match="feature dims"):
        embed_stages({"a": X, "b": X[:, :5]}, (2,), FAST, Align.ALIGNED)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        embed_stages({"a": bad}, (2,), FAST)
    with pytest.raises(ConfigError, match="unknown alignment"):
        Align.parse("sideways")
    with pytest.raises(ConfigError):
        TSNEParams(perplexity=0)


@pytest.mark.parametrize("n,d", [(50, 10), (12, 40)])  # covariance and Gram branches
def test_pca_orthonormal_and_ordered(n, d):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(n, d)) * np.linspace(5, 0.1, d)
    basis = fit_pca(X, 5)
    C = basis.components
    np.testing.assert_allclose(C @ C.T, np.eye(len(C)), atol=1e-8)
    Z = basis.apply(X)
    var = Z.var(axis=0)
    assert np.all(np.diff(var) <= 1e-6)  # decreasing variance
    # the same subspace as numpy's SVD
    _, _, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(C @ vt[:5].T), np.eye(5), atol=1e-6)
    np.testing.assert_array_equal(fit_pca(X, 5).components, C)  # deterministic signs


def test_comparison_metrics():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(100, 2))
    assert np.all(displacement(Y, Y) == 0)
    assert knn_preservation(Y, Y) == 1.0
    assert knn_preservation(rng.normal(size=(100, 2)), Y) < 0.5
    assert displacement(Y + 1.0, Y).mean() > 0.3
