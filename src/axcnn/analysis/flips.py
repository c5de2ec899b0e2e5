"""Prediction flips between two stages of the same test samples.

For a pair (``a``, ``b``), typically (exact, approximate), every test sample is one of:

- ``right_to_wrong``: correct in ``a``, wrong in ``b`` (what the approximation broke)
- ``wrong_to_right``: wrong in ``a``, correct in ``b`` (what it fixed)
- ``wrong_changed``: wrong in both, with different predictions
- ``same``: the same prediction in both
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FLIP_KINDS = ("right_to_wrong", "wrong_to_right", "wrong_changed", "same")
PER_CLASS_COLUMNS = ("class", "name", "n", "correct_a", "correct_b", "accuracy_a", "accuracy_b",
                     "right_to_wrong", "wrong_to_right", "wrong_changed")


def flip_kinds(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """One of FLIP_KINDS per sample (an array of str)."""
    y, pa, pb = (np.asarray(v) for v in (y, pred_a, pred_b))
    if not (len(y) == len(pa) == len(pb)):
        raise ValueError("labels and predictions must have the same length")
    ra, rb = pa == y, pb == y
    out = np.full(len(y), "same", dtype=object)
    out[ra & ~rb] = "right_to_wrong"
    out[~ra & rb] = "wrong_to_right"
    out[~ra & ~rb & (pa != pb)] = "wrong_changed"
    return out.astype(str)


def flip_table(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, classes: list[str],
               a: str = "a", b: str = "b") -> dict:
    """Counts of each flip kind overall and per true class, with both stages' accuracies."""
    y, pa, pb = (np.asarray(v) for v in (y, pred_a, pred_b))
    kinds = flip_kinds(y, pa, pb)
    rows = []
    for c in sorted(set(int(v) for v in y)):
        m = y == c
        n = int(m.sum())
        ca, cb = int((pa[m] == c).sum()), int((pb[m] == c).sum())
        rows.append({"class": c, "name": classes[c] if c < len(classes) else str(c), "n": n,
                     "correct_a": ca, "correct_b": cb,
                     "accuracy_a": 100.0 * ca / n, "accuracy_b": 100.0 * cb / n,
                     **{k: int((kinds[m] == k).sum()) for k in FLIP_KINDS[:3]}})
    # where the broken samples went: true class -> predicted class in b
    broken = kinds == "right_to_wrong"
    confusion = {}
    for t, p in zip(y[broken], pb[broken]):
        key = f"{int(t)}->{int(p)}"
        confusion[key] = confusion.get(key, 0) + 1
    n = len(y)
    return {"a": a, "b": b, "n": n,
            "accuracy_a": 100.0 * float((pa == y).mean()) if n else 0.0,
            "accuracy_b": 100.0 * float((pb == y).mean()) if n else 0.0,
            "counts": {k: int((kinds == k).sum()) for k in FLIP_KINDS},
            "broken_to": dict(sorted(confusion.items(), key=lambda kv: -kv[1])),
            "per_class": rows}


def write_flip_csv(table: dict, path: str | Path) -> Path:
    """The per-class table of ``flip_table`` as CSV (a and b named in the header)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [c.replace("_a", f"_{table['a']}").replace("_b", f"_{table['b']}")
              if c.endswith(("_a", "_b")) else c for c in PER_CLASS_COLUMNS]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in table["per_class"]:
            w.writerow([f"{r[c]:.2f}" if isinstance(r[c], float) else r[c] for c in PER_CLASS_COLUMNS])
    return path


def write_predictions_csv(path: str | Path, test_indices: np.ndarray, y: np.ndarray,
                          preds: dict[str, np.ndarray]) -> Path:
    """One row per sampled test image: dataset index, label and every stage's prediction."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tags = list(preds)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test_position", "dataset_index", "label", *[f"pred_{t}" for t in tags]])
        for i, (idx, lab) in enumerate(zip(test_indices, y)):
            w.writerow([i, int(idx), int(lab), *[int(preds[t][i]) for t in tags]])
    return path
