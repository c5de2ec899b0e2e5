"""t-SNE embeddings of several stages' features of the same samples, with openTSNE.

Three ways to embed the stages (``Align``):

- ``independent``: every stage gets its own standard t-SNE (PCA initialisation, early
  exaggeration). This is the seed's behaviour: the samples match across stages but the
  coordinates do not (each map is free to rotate, mirror and rearrange its clusters).
- ``aligned`` (default): the reference stage (exact) gets a standard t-SNE; every other stage is
  optimised on *its own* affinities but starts from the reference coordinates of the same samples,
  with no early exaggeration (which would scramble the start). Clusters whose neighbourhoods
  persist stay where they were; points whose features moved towards another class are pulled
  there. Positions are therefore comparable across stages: a point's displacement is what the
  stage did to that sample.
- ``transform``: the reference map is frozen and each stage's features are placed into it with
  openTSNE's ``TSNEEmbedding.transform`` (affinities to the *reference* points, median
  initialisation of the nearest reference neighbours). This answers "where would the exact
  model put this sample, given the stage's features?"; it needs features of one space, which
  all stages of one layer have.

Features with more than ``pca_dims`` columns are first reduced by PCA. In ``aligned`` and
``transform`` the reference stage's PCA basis is used for every stage (one feature space); in
``independent`` each stage gets its own. A stage whose features equal the reference's exactly
(pixels, for instance) reuses the reference embedding (a seeded fit would give the same).
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConfigError

log = logging.getLogger("axcnn.analysis")


class Align(enum.Enum):
    INDEPENDENT = "independent"
    ALIGNED = "aligned"
    TRANSFORM = "transform"

    @classmethod
    def parse(cls, value: "Align | str") -> "Align":
        if isinstance(value, Align):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConfigError(f"unknown alignment '{value}'; expected one of "
                              f"{', '.join(a.value for a in cls)}") from None


@dataclass(frozen=True)
class TSNEParams:
    """t-SNE settings (openTSNE names); ``n_iter`` counts the iterations after exaggeration."""

    perplexity: float = 30.0
    n_iter: int = 500
    early_exaggeration_iter: int = 250
    seed: int = 42
    n_jobs: int = 0                 # 0: auto (1 thread below 1000 points, else all usable cores)
    pca_dims: int = 50              # 0: no PCA
    neighbors: str = "auto"         # auto | exact | annoy | pynndescent | approx
    negative_gradient_method: str = "auto"  # auto (2-D: Barnes-Hut below 10000 points, else FFT;
                                            # 3-D: Barnes-Hut) | fft | bh

    def __post_init__(self) -> None:
        if self.perplexity <= 0:
            raise ConfigError(f"--perplexity must be > 0, got {self.perplexity}")
        if self.n_iter < 1 or self.early_exaggeration_iter < 0:
            raise ConfigError("--n-iter must be >= 1 and the early exaggeration iterations >= 0")
        if self.pca_dims < 0:
            raise ConfigError(f"--pca must be >= 0, got {self.pca_dims}")

    def jobs(self, n: int) -> int:
        """Threads for ``n`` points: small problems run faster on one thread (openTSNE's
        per-iteration synchronisation dominates, badly so on a busy machine)."""
        if self.n_jobs > 0:
            return self.n_jobs
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return 1 if n < 1000 else cores


def _opentsne():
    try:
        import openTSNE
    except ImportError:
        raise ConfigError("t-SNE needs openTSNE: pip install 'axcnn[analysis]'") from None
    return openTSNE


# --------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class PCABasis:
    mean: np.ndarray         # (D,)
    components: np.ndarray   # (k, D), rows orthonormal

    def apply(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(X: np.ndarray, k: int) -> PCABasis:
    """Exact PCA (deterministic, sign fixed so each component's largest entry is positive)."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    Xc = X - mean
    n, d = Xc.shape
    k = min(k, n, d)
    if d <= n:
        vals, vecs = np.linalg.eigh(Xc.T @ Xc)
        comps = vecs[:, ::-1][:, :k].T
    else:  # Gram trick: eigenvectors of X X^T give the components as X^T u / |X^T u|
        vals, vecs = np.linalg.eigh(Xc @ Xc.T)
        u = vecs[:, ::-1][:, :k]
        comps = (Xc.T @ u).T
        norms = np.linalg.norm(comps, axis=1, keepdims=True)
        comps = comps / np.where(norms > 0, norms, 1.0)
    idx = np.argmax(np.abs(comps), axis=1)
    signs = np.sign(comps[np.arange(len(comps)), idx])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    return PCABasis(mean, comps)


def _standardise_input(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ConfigError(f"features must be a 2-D array (samples, dims), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ConfigError(f"{bad} samples have NaN or infinite features; the model produced "
                          "non-finite activations (check the checkpoint and LUT)")
    return X


# --------------------------------------------------------------------------- fits
@dataclass
class Embedding:
    """Coordinates of one stage in one dimensionality, plus what produced them."""

    Y: np.ndarray                 # (N, n_components) float32
    kl_divergence: float | None
    method: str                   # standard | aligned | transform | reused
    model: object | None = None   # the openTSNE TSNEEmbedding (reference only; not saved)


def _gradient_method(params: TSNEParams, n_components: int, n: int) -> str:
    if params.negative_gradient_method != "auto":
        return params.negative_gradient_method
    return "fft" if n_components <= 2 and n >= 10000 else "bh"


def _neighbors(params: TSNEParams, n: int) -> str:
    if params.neighbors != "auto":
        return params.neighbors
    return "exact" if n <= 1000 else "annoy"


def fit_standard(X: np.ndarray, n_components: int, params: TSNEParams) -> Embedding:
    """A standard t-SNE (PCA initialisation, early exaggeration) of ``X``."""
    ot = _opentsne()
    X = _standardise_input(X)
    if len(X) < 4:
        raise ConfigError(f"t-SNE needs at least 4 samples, got {len(X)}")
    perplexity = min(params.perplexity, (len(X) - 1) / 3.0)
    tsne = ot.TSNE(n_components=n_components, perplexity=perplexity, n_iter=params.n_iter,
                   early_exaggeration_iter=params.early_exaggeration_iter,
                   n_jobs=params.jobs(len(X)), random_state=params.seed,
                   neighbors=_neighbors(params, len(X)),
                   negative_gradient_method=_gradient_method(params, n_components, len(X)), verbose=False)
    emb = tsne.fit(X)
    return Embedding(np.asarray(emb, dtype=np.float32), float(emb.kl_divergence), "standard", emb)


def fit_from(X: np.ndarray, init: np.ndarray, params: TSNEParams) -> Embedding:
    """t-SNE of ``X`` on its own affinities, started at ``init`` (no early exaggeration)."""
    ot = _opentsne()
    from openTSNE import affinity

    X = _standardise_input(X)
    n_components = init.shape[1]
    perplexity = min(params.perplexity, (len(X) - 1) / 3.0)
    aff = affinity.PerplexityBasedNN(X, perplexity=perplexity, method=_neighbors(params, len(X)),
                                     n_jobs=params.jobs(len(X)), random_state=params.seed, verbose=False)
    emb = ot.TSNEEmbedding(np.array(init, dtype=np.float64, copy=True), aff,
                           negative_gradient_method=_gradient_method(params, n_components, len(X)),
                           n_jobs=params.jobs(len(X)), random_state=params.seed, verbose=False)
    emb = emb.optimize(n_iter=params.n_iter, exaggeration=None, momentum=0.8,
                       learning_rate=max(len(X) / 12.0, 50.0))
    return Embedding(np.asarray(emb, dtype=np.float32), float(emb.kl_divergence), "aligned", None)


def transform_into(reference: Embedding, X: np.ndarray) -> Embedding:
    """Place ``X`` (same feature space as the reference) into the frozen reference map."""
    if reference.model is None:
        raise ConfigError("transform alignment needs the reference t-SNE object")
    X = _standardise_input(X)
    part = reference.model.transform(X)
    return Embedding(np.asarray(part, dtype=np.float32), None, "transform", None)


# --------------------------------------------------------------------------- stages
@dataclass
class StageEmbeddings:
    """Per stage tag: {n_components: Embedding}, plus the reference tag and alignment."""

    embeddings: dict[str, dict[int, Embedding]]
    reference: str
    align: Align
    pca_dims: dict[str, int]


def embed_stages(features: dict[str, np.ndarray], components: tuple[int, ...], params: TSNEParams,
                 align: Align = Align.ALIGNED, reference: str | None = None,
                 on_step: Callable[[str], None] | None = None) -> StageEmbeddings:
    """Embed every stage's features (rows = the same samples in every stage)."""
    if not features:
        raise ConfigError("no stages to embed")
    tags = list(features)
    reference = reference or tags[0]
    if reference not in features:
        raise ConfigError(f"reference stage '{reference}' is not among {tags}")
    n = {len(v) for v in features.values()}
    if len(n) != 1:
        raise ConfigError(f"stages have different numbers of samples {sorted(n)}; they must share them")
    order = [reference] + [t for t in tags if t != reference]
    ref_X = _standardise_input(features[reference])
    shared_basis = None
    if params.pca_dims and ref_X.shape[1] > params.pca_dims and align is not Align.INDEPENDENT:
        shared_basis = fit_pca(ref_X, params.pca_dims)
    out: dict[str, dict[int, Embedding]] = {}
    dims: dict[str, int] = {}
    for tag in order:
        X = _standardise_input(features[tag])
        if X.shape[1] != ref_X.shape[1] and align is not Align.INDEPENDENT:
            raise ConfigError(f"stage '{tag}' has {X.shape[1]} feature dims, the reference has "
                              f"{ref_X.shape[1]}; use --align independent")
        same_as_ref = tag != reference and np.array_equal(X, ref_X)
        if shared_basis is not None:
            Xr = shared_basis.apply(X)
        elif params.pca_dims and X.shape[1] > params.pca_dims:
            Xr = fit_pca(X, params.pca_dims).apply(X)
        else:
            Xr = X
        dims[tag] = int(Xr.shape[1])
        out[tag] = {}
        for nc in components:
            if on_step:
                on_step(f"{tag} {nc}-D")
            if tag == reference:
                out[tag][nc] = fit_standard(Xr, nc, params)
            elif same_as_ref:  # identical input, identical (seeded) result
                ref = out[reference][nc]
                out[tag][nc] = Embedding(ref.Y.copy(), ref.kl_divergence, "reused", None)
            elif align is Align.INDEPENDENT:
                emb = fit_standard(Xr, nc, params)
                emb.model = None
                out[tag][nc] = emb
            elif align is Align.ALIGNED:
                out[tag][nc] = fit_from(Xr, out[reference][nc].Y, params)
            else:
                out[tag][nc] = transform_into(out[reference][nc], Xr)
    for nc in components:  # the openTSNE objects hold kNN indexes; do not keep them around
        out[reference][nc].model = None
    return StageEmbeddings({t: out[t] for t in tags}, reference, align, dims)


# --------------------------------------------------------------------------- comparisons
def displacement(Y: np.ndarray, Y_ref: np.ndarray) -> np.ndarray:
    """Per-point distance between two embeddings, in units of the reference's RMS radius."""
    centred = Y_ref - Y_ref.mean(axis=0)
    scale = float(np.sqrt((centred ** 2).sum(axis=1).mean())) or 1.0
    return (np.linalg.norm(Y - Y_ref, axis=1) / scale).astype(np.float32)


def knn_preservation(Y: np.ndarray, Y_ref: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each point's k nearest neighbours shared by two embeddings."""
    n = len(Y)
    k = min(k, n - 1)
    if k < 1:
        return 1.0

    def knn(Z):
        from scipy.spatial import cKDTree
        return cKDTree(Z).query(Z, k + 1)[1][:, 1:]

    a, b = knn(np.asarray(Y, np.float64)), knn(np.asarray(Y_ref, np.float64))
    shared = [len(np.intersect1d(a[i], b[i], assume_unique=True)) for i in range(n)]
    return float(np.mean(shared) / k)


def class_separation(Y: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy of the labels in the embedding (1.0: classes kept apart)."""
    from scipy.spatial import cKDTree

    Y = np.asarray(Y, np.float64)
    nearest = cKDTree(Y).query(Y, 2)[1][:, 1]
    return float((labels[nearest] == labels).mean())
