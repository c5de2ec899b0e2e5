"""Benchmark of the t-SNE step of ``axcnn tsne`` (openTSNE), pinned to at most 2 CPU cores.

For each N it times, on clustered 50-d features (10 Gaussian classes: what the penultimate
features of a CNN look like after the default PCA to 50 dims):

- ``standard``: the reference (exact-stage) map, as ``axcnn tsne`` fits it: perplexity 30,
  250 early-exaggeration + 500 iterations;
- ``aligned``: a second stage (the same samples, perturbed features) started from that map;
- ``transform``: the second stage placed into the frozen map;
- ``3d``: the standard fit in 3-D (optional, ``--3d``);

and, as the baseline, scikit-learn's ``TSNE`` (what the seed used; Barnes-Hut, same perplexity
and 750 iterations, ``n_jobs`` = the pinned cores) up to ``--baseline-max`` points.

Target (issue): 10,000 points in <= 60 s on 2 cores. Prints one table and writes
``benchmarks/results/tsne-<date>.json``.

    python benchmarks/tsne.py [--sizes 1000,2500,5000,10000] [--cores 2] [--baseline-max 10000] [--3d]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

from _machine import cpu_model


def _pin(cores: int) -> list[int]:
    avail = sorted(os.sched_getaffinity(0))
    use = avail[:cores]
    os.sched_setaffinity(0, use)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(len(use))
    return use


def _data(n: int, d: int = 50, k: int = 10, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4.0
    y = rng.integers(0, k, n)
    X = (centres[y] + rng.normal(size=(n, d))).astype(np.float32)
    X2 = (X + rng.normal(size=X.shape) * 0.3).astype(np.float32)
    return X, X2, y


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,2500,5000,10000")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--baseline-max", type=int, default=10000, help="largest N for the sklearn baseline (0: none)")
    ap.add_argument("--3d", dest="three_d", action="store_true", help="also time the 3-D fit")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    cores = _pin(args.cores)

    import numpy as np

    from axcnn.analysis.embedding import (Align, TSNEParams, class_separation, displacement, fit_from,
                                          fit_standard, transform_into)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    for n in sizes:
        X, X2, y = _data(n)
        params = TSNEParams(pca_dims=0, seed=0)  # axcnn defaults: 1 thread below 1000 points, else all pinned cores
        row = {"n": n, "dims": X.shape[1]}
        t = time.perf_counter()
        ref = fit_standard(X, 2, params)
        row["standard_s"] = time.perf_counter() - t
        row["separation"] = class_separation(ref.Y, y)
        t = time.perf_counter()
        ali = fit_from(X2, ref.Y, params)
        row["aligned_s"] = time.perf_counter() - t
        row["aligned_median_displacement"] = float(np.median(displacement(ali.Y, ref.Y)))
        t = time.perf_counter()
        transform_into(ref, X2)
        row["transform_s"] = time.perf_counter() - t
        ref.model = None
        if args.three_d:
            t = time.perf_counter()
            fit_standard(X, 3, params)
            row["3d_s"] = time.perf_counter() - t
        if args.baseline_max and n <= args.baseline_max:
            from sklearn.manifold import TSNE

            t = time.perf_counter()
            kw = {"max_iter": 750}
            try:
                TSNE(n_components=2, perplexity=30, init="pca", random_state=0, n_jobs=len(cores), **kw).fit_transform(X)
            except TypeError:  # older scikit-learn
                TSNE(n_components=2, perplexity=30, init="pca", random_state=0, n_jobs=len(cores),
                     n_iter=750).fit_transform(X)
            row["sklearn_s"] = time.perf_counter() - t
        rows.append(row)
        print(f"  N={n}: standard {row['standard_s']:.1f} s", file=sys.stderr, flush=True)

    import openTSNE

    head = f"{'N':>7} {'standard s':>11} {'aligned s':>10} {'transform s':>12}" + \
           (f" {'3-D s':>7}" if args.three_d else "") + f" {'sklearn s':>10} {'speed-up':>9} {'1-NN sep':>9}"
    print(f"t-SNE on {len(cores)} cores of {cpu_model()} (openTSNE {openTSNE.__version__}); target: 10,000 points <= 60 s")
    print(head)
    for r in rows:
        sk = r.get("sklearn_s")
        print(f"{r['n']:>7} {r['standard_s']:>11.1f} {r['aligned_s']:>10.1f} {r['transform_s']:>12.1f}"
              + (f" {r['3d_s']:>7.1f}" if args.three_d else "")
              + (f" {sk:>10.1f} {sk / r['standard_s']:>8.1f}x" if sk else f" {'-':>10} {'-':>9}")
              + f" {r['separation']:>9.3f}")
    result = {"benchmark": "tsne", "date": _dt.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpu": cpu_model(), "cores_used": len(cores), "host_cores": os.cpu_count(),
                          "python": platform.python_version()},
              "versions": {"openTSNE": openTSNE.__version__, "numpy": np.__version__},
              "target": "10,000 points <= 60 s on 2 cores (standard 2-D fit)", "rows": rows}
    try:
        import sklearn
        result["versions"]["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"tsne-{_dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
