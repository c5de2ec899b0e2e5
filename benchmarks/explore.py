"""Benchmark of the explore loop: candidates per hour for a LeNet-5 sweep over built-in families.

Trains (once, cached under the work folder) LeNet-5 on Fashion-MNIST -- exact for
``--exact-epochs`` epochs, then 8-bit quantized for one epoch -- and runs ``axcnn explore``
over the built-in families' default 8-bit grid (exact, truncK, bamH_V, drumK, mitchell): per
candidate the generated circuit's full hardware report (yosys + ABC, OpenSTA, workload power
from the model's operand histogram), uniform and workload-weighted error, and the CNN accuracy
of the approximate stage without retraining on the whole test set.

Each executor configuration (``--configs``, default ``seq,pool2``: one in-process worker with
all threads, a process pool of 2 workers) runs in a fresh folder on the same candidates.
The baseline, measured in the same run, is the test-set evaluation of the quantized model
with exact products (the cost floor of one CNN evaluation). ``cand/h`` counts the whole
``explore run`` (setup included: operand statistics, checkpoint copy, worker start-up);
``cand/h (loop)`` only the candidate loop. Prints one table and writes
``benchmarks/results/explore-<date>.json``.

    python benchmarks/explore.py [--max-candidates 12] [--configs seq,pool2] [--work DIR]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from _machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def _train(work: Path, dataset: str, exact_epochs: int) -> dict:
    from axcnn.config import Stage, resolve_config
    from axcnn.train import RunEnv, run_stage

    env = RunEnv(runs_dir=work / "runs", progress=False)
    t0 = time.perf_counter()
    ex = run_stage(resolve_config("lenet5", dataset, Stage.EXACT,
                                  optim_overrides={"epochs": exact_epochs}), env)
    q = run_stage(resolve_config("lenet5", dataset, Stage.QUANTIZED, bits=8,
                                 optim_overrides={"epochs": 1}), env)
    return {"exact_accuracy": ex["accuracy"], "quantized_accuracy": q["accuracy"],
            "train_seconds": time.perf_counter() - t0}


def _baseline(work: Path, dataset: str) -> float:
    """Seconds for one test-set evaluation of the quantized model (exact products)."""
    from axcnn.config import Stage, resolve_config
    from axcnn.train import RunEnv
    from axcnn.train.pipeline import evaluate_checkpoint, load_data

    env = RunEnv(runs_dir=work / "runs", progress=False)
    cfg = resolve_config("lenet5", dataset, Stage.QUANTIZED, bits=8)
    data = load_data(cfg, env)
    evaluate_checkpoint(cfg, env, data)   # warm-up
    t0 = time.perf_counter()
    evaluate_checkpoint(cfg, env, data)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--exact-epochs", type=int, default=2)
    ap.add_argument("--max-candidates", type=int, default=None,
                    help="evaluate only the first N candidates of the grid (default: all)")
    ap.add_argument("--configs", default="seq,pool2",
                    help="comma-separated: seq (1 in-process worker), poolN (N processes)")
    ap.add_argument("--operands", default="stats", help="uniform or stats")
    ap.add_argument("--work", type=Path, default=Path("/tmp/axcnn-bench-explore"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from axcnn.explore.runner import run_exploration
    from axcnn.explore.spec import spec_from_dict
    from axcnn.explore.store import ResultsStore

    args.work.mkdir(parents=True, exist_ok=True)
    trained = _train(args.work, args.dataset, args.exact_epochs)
    base_s = _baseline(args.work, args.dataset)
    results = []
    for conf in args.configs.split(","):
        workers = 1 if conf == "seq" else int(conf.removeprefix("pool"))
        spec = spec_from_dict({
            "name": f"bench-{conf}", "model": "lenet5", "dataset": args.dataset, "bits": 8,
            "runs_dir": str(args.work / "runs"), "operands": args.operands,
            "cnn": {"retrain": "none"}, "hardware": {},
            "sources": [{"type": "builtin"}],
            "executor": {"kind": "local", "workers": workers}}, base_dir=args.work)
        folder = args.work / f"explore-{conf}"
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        summary = run_exploration(spec, folder, progress=False, max_candidates=args.max_candidates)
        wall = time.perf_counter() - t0
        with ResultsStore(folder / "results.sqlite", readonly=True) as st:
            rows = st.rows(status="ok")
        eda = sorted(r["eda_seconds"] for r in rows if r["eda_seconds"] is not None)
        cnn = sorted(r["cnn_seconds"] for r in rows if r["cnn_seconds"] is not None)
        results.append({
            "config": conf, "workers": workers, "candidates": summary.evaluated, "ok": summary.ok,
            "failed": summary.failed, "wall_s": round(wall, 1),
            "loop_s": round(summary.seconds, 1),
            "candidates_per_hour": round(3600 * summary.evaluated / wall, 1) if wall else 0,
            "candidates_per_hour_loop": round(summary.per_hour, 1),
            "eda_s_median": eda[len(eda) // 2] if eda else None,
            "cnn_s_median": cnn[len(cnn) // 2] if cnn else None,
            "cnn_s_total": round(sum(cnn), 1), "eda_s_total": round(sum(eda), 1),
            "accuracy_range": [min(r["accuracy"] for r in rows), max(r["accuracy"] for r in rows)]
            if rows else None})
    record = {
        "benchmark": "explore", "date": _dt.date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform()},
        "model": "lenet5", "dataset": args.dataset, "bits": 8, "operands": args.operands,
        "trained": trained, "baseline_quantized_eval_s": round(base_s, 2), "results": results}
    head = ["config", "workers", "candidates", "wall_s", "cand/h", "cand/h (loop)",
            "EDA s (median)", "CNN s (median)"]
    rows_out = [[r["config"], str(r["workers"]), str(r["candidates"]), f"{r['wall_s']:.0f}",
                 f"{r['candidates_per_hour']:.0f}", f"{r['candidates_per_hour_loop']:.0f}",
                 f"{r['eda_s_median'] or 0:.2f}", f"{r['cnn_s_median'] or 0:.1f}"]
                for r in results]
    widths = [max(len(h), *(len(x[i]) for x in rows_out)) for i, h in enumerate(head)]
    print(f"LeNet-5 / {args.dataset}, 8-bit, built-in families; {cpu_model()}, "
          f"{os.cpu_count()} cores; exact {trained['exact_accuracy']:.2f}%, quantized "
          f"{trained['quantized_accuracy']:.2f}%; baseline (quantized test-set eval, exact "
          f"products) {base_s:.2f} s")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for x in rows_out:
        print("  ".join(c.ljust(w) for c, w in zip(x, widths)))
    out = args.out or ROOT / "benchmarks" / "results" / f"explore-{record['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
