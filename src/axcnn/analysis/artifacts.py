"""The files a t-SNE analysis writes, and how to read them back.

One analysis is a directory named from its content::

    <runs>/<model>-<dataset>/tsne/<layer>-<align>-<hash8>/
        metadata.json                 format axcnn-tsne/1: parameters, stages, sampling, summaries
        artifacts/<stage tag>.npz     one per stage (keys below)
        figures/*.png                 per stage (2-D, 3-D), all stages side by side, flips, misclassified
        flips.json, flips_<a>__<b>.csv, predictions.csv
        luts/<stage tag>.npz          the LUT of each approximate stage (axcnn .npz format)

Artefact keys: the seed's (SEED_SPEC 5.2) ``X_2d`` [``X_3d``], ``y_all``, ``test_mask`` (train
points first), ``y_test_sub``, ``y_pred_sub``, ``X_test_pixels`` (uint8, flattened),
``image_shape`` (C, H, W), ``model_name``, ``feature_space``, ``feature_layer_path``,
``feature_layer_requested``, ``output_tag``, ``classes``, ``title``; and ours: ``stage``,
``align``, ``reference_tag``, ``train_indices``, ``test_indices`` (dataset indices),
``accuracy`` (on the sampled test images), ``kl_2d``/``kl_3d``, ``displacement_2d``/``_3d``
(per point, from the reference stage, in units of the reference map's RMS radius),
``feature_shift`` (per test image: ``|f - f_ref| / mean |f_ref|`` in the layer's features),
``lut_name``, ``lut_sha256``. Readers tolerate missing keys (``load_artifact``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path, write_json  # noqa: F401 (write_json is re-exported)
from ..errors import DataError

FORMAT = "axcnn-tsne/1"
SEED_KEYS = ("X_2d", "X_3d", "y_all", "test_mask", "y_test_sub", "y_pred_sub", "X_test_pixels",
             "image_shape", "model_name", "feature_space", "feature_layer_path",
             "feature_layer_requested", "output_tag", "classes", "title")
STRING_KEYS = ("model_name", "feature_space", "feature_layer_path", "feature_layer_requested",
               "output_tag", "title", "stage", "align", "reference_tag", "lut_name", "lut_sha256")


def save_artifact(path: str | Path, **arrays: Any) -> Path:
    """Write a compressed ``.npz`` artefact atomically (strings become 0-d unicode arrays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {}
    for k, v in arrays.items():
        if v is None:
            continue
        if isinstance(v, str):
            v = np.array(v)
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
            v = np.array(list(v), dtype=str)
        clean[k] = np.asarray(v)
        if clean[k].dtype == object:
            raise DataError(f"artefact key '{k}' is not a plain array")
    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, **clean)
    return path


def load_artifact(path: str | Path) -> dict[str, Any]:
    """An artefact as a dict: strings as str, ``classes`` as a list, missing keys absent."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict[str, Any] = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"'{path}' is not a readable t-SNE artefact ({exc})") from None
    for k in STRING_KEYS:
        if k in out and out[k].ndim == 0:
            out[k] = str(out[k])
    if "classes" in out:
        out["classes"] = [str(c) for c in np.atleast_1d(out["classes"])]
    if "image_shape" in out:
        out["image_shape"] = tuple(int(v) for v in out["image_shape"])
    return out


def has_2d(art: dict) -> bool:
    return "X_2d" in art


def has_3d(art: dict) -> bool:
    return "X_3d" in art


def test_positions(art: dict) -> np.ndarray:
    """Row numbers (into ``X_2d``) of the test points, in test order."""
    mask = np.asarray(art.get("test_mask", np.ones(len(art.get("y_all", [])), bool)), bool)
    return np.flatnonzero(mask)


def read_metadata(run_dir: str | Path) -> dict:
    p = Path(run_dir) / "metadata.json"
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"'{p}' is missing or unreadable ({exc})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"'{p}' is not an axcnn t-SNE analysis (format {meta.get('format')!r})")
    return meta


def list_artifacts(run_dir: str | Path) -> list[Path]:
    """The stage artefacts of an analysis, in the order its metadata lists the stages."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / "artifacts").glob("*.npz"))
    try:
        order = [s["tag"] for s in read_metadata(run_dir).get("stages", [])]
    except DataError:
        order = []
    rank = {t: i for i, t in enumerate(order)}
    return sorted(files, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def find_analyses(runs_dir: str | Path) -> list[Path]:
    """Every t-SNE analysis directory under ``runs_dir`` (those with a complete metadata.json)."""
    root = Path(runs_dir)
    out = []
    for meta in sorted(root.glob("*/tsne/*/metadata.json")):
        try:
            if read_metadata(meta.parent).get("status") == "complete":
                out.append(meta.parent)
        except DataError:
            continue
    return out
