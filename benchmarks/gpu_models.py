"""GPU model benchmark: inference images/s and training-step time of whole models.

ResNet-20 and VGG-16 (CIFAR, 32x32) at batch 256 on one GPU, synthetic inputs already on the
device (no data loading), in one run on one card:

- inference (eval, no_grad), images/s: exact FP32 (cuDNN, TF32 off), exact TF32, 8-bit
  quantized (exact products, ``auto``), approximate with the ``triton`` LUT kernels, with the
  ``decomposed`` tensor-core factorisation, and with ``auto``; approximate layers use
  ``--lut`` (default mul8u_17C8, error rank 4 -> 5 int8 GEMM terms; LUT kernels do not depend
  on the table's content). The ``auto`` approximate model also runs with operand statistics
  recorded (``record_operands``: eager, the recorder keeps the forward out of CUDA graphs), the
  cost of leaving them on during evaluation: per batch, and the one-off combination of the
  counts with the weights when the histograms are read (``--no-stats`` skips it).
  Rows marked "+ CUDA graph" replay the same eval forward from a CUDA graph
  (:class:`axcnn.nn.GraphedModel`, what ``axcnn.train.evaluate`` uses on CUDA).
- training (ResNet-20 by default), ms per SGD step (forward + backward + update) and the
  implied epoch of 50,000 images: exact (PyTorch defaults), approximate + STE, approximate +
  error-aware gradients (``auto``: factorised gradients where the LUT allows, ``triton``:
  per-tap gather kernels), and error-aware with a LUT that has no cheap factorisation; each
  eagerly and with the forward and backward replayed from CUDA graphs
  (:class:`axcnn.nn.GraphedTraining`, what ``axcnn.train.train_epoch`` uses on CUDA).

Prints one table and writes ``benchmarks/results/gpu_models.json``.

    PYTHONPATH=src python benchmarks/gpu_models.py [--models resnet20,vgg16] [--iters 20]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from _machine import evoapprox_luts, gpu_meta

ROOT = Path(__file__).resolve().parents[1]
EPOCH_IMAGES = 50_000


def load_lut(name: str):
    """A shared EvoApprox table by name, else a built-in family member."""
    from axcnn.lut import builtin

    return evoapprox_luts().get(name) or builtin(name)


def timed(fn, iters: int, warmup: int = 3) -> float:
    """Median seconds per call (CUDA events around each call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return statistics.median(times)


def build(model_name: str, mode: str, lut, backend: str, grad_rule: str, x, dev):
    from axcnn.models import create_model
    from axcnn.nn import ConversionPlan, Mode, convert_
    from axcnn.quant import calibrate

    torch.manual_seed(0)
    model = create_model(model_name)
    if mode != "exact":
        plan = ConversionPlan(mode=Mode.QUANTIZED if mode == "quantized" else Mode.APPROXIMATE,
                              lut=lut if mode == "approximate" else None, backend=backend,
                              grad_rule=grad_rule)
        convert_(model, plan)
    model = model.to(dev)
    if mode != "exact":
        calibrate(model, [x])
    return model


def inference(model_name, args, dev, lut, lut_nf):
    from axcnn.nn import GraphCaptureError, graphed_forward, record_operands

    x = torch.randn(args.batch, 3, 32, 32, device=dev)
    configs = [
        ("exact FP32", "exact", None, "auto", False),
        ("exact TF32", "exact", None, "auto", True),
        ("8-bit quantized", "quantized", None, "auto", True),
        (f"approx LUT (triton, {lut.name})", "approximate", lut, "triton", True),
        (f"approx decomposed ({lut.name})", "approximate", lut, "decomposed", True),
        (f"approx auto ({lut.name})", "approximate", lut, "auto", True),
        (f"approx LUT (auto, {lut_nf.name})", "approximate", lut_nf, "auto", True),
    ]
    rows = []
    for label, mode, the_lut, backend, tf32 in configs:
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        model = build(model_name, mode, the_lut, backend, "ste", x, dev).eval()
        with torch.no_grad():
            t = timed(lambda: model(x), args.iters)
        rows.append({"model": model_name, "config": label, "s_per_batch": t,
                     "images_per_s": args.batch / t})
        print(f"  {model_name} {label}: {t * 1e3:.2f} ms/batch, {args.batch / t:,.0f} img/s",
              file=sys.stderr, flush=True)
        if mode != "exact" or not tf32:
            graphed = graphed_forward(model)
            try:
                with torch.no_grad():
                    ref = model(x)
                    same = bool(torch.equal(graphed(x), ref))
                    t = timed(lambda: graphed(x), args.iters)
                rows.append({"model": model_name, "config": label + " + CUDA graph", "s_per_batch": t,
                             "images_per_s": args.batch / t, "equal_to_eager": same})
                print(f"  {model_name} {label} + CUDA graph: {t * 1e3:.2f} ms/batch, "
                      f"{args.batch / t:,.0f} img/s, equal to eager: {same}", file=sys.stderr, flush=True)
            except GraphCaptureError as exc:
                print(f"  {model_name} {label}: no CUDA graph ({exc})", file=sys.stderr, flush=True)
            del graphed
        if args.stats and mode == "approximate" and backend == "auto" and the_lut is lut:
            with torch.no_grad(), record_operands(model) as warm:
                model(x)
                warm.histograms         # first use of the sparse and float64 kernels
            with torch.no_grad(), record_operands(model) as rec:
                t = timed(lambda: model(x), max(3, args.iters // 2))
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                rec.histograms          # the one combination with the weights, per evaluation
                torch.cuda.synchronize()
                t_comb = time.perf_counter() - t0
            rows.append({"model": model_name, "config": label + " + operand stats",
                         "s_per_batch": t, "images_per_s": args.batch / t, "combine_s": t_comb})
            print(f"  {model_name} {label} + stats: {t * 1e3:.2f} ms/batch, combining "
                  f"{t_comb * 1e3:.1f} ms once", file=sys.stderr, flush=True)
        del model
        torch.cuda.empty_cache()
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def training(model_name, args, dev, lut, lut_nf):
    x = torch.randn(args.batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    configs = [
        ("exact", "exact", None, "auto", "ste"),
        (f"approx STE (auto, {lut.name})", "approximate", lut, "auto", "ste"),
        (f"approx error-aware (auto, {lut.name})", "approximate", lut, "auto", "error_aware"),
        (f"approx error-aware (triton, {lut.name})", "approximate", lut, "triton", "error_aware"),
        (f"approx error-aware (auto, {lut_nf.name})", "approximate", lut_nf, "auto", "error_aware"),
    ]
    from axcnn.nn import GraphedTraining

    rows = []
    base = {}
    for label, mode, the_lut, backend, rule in configs:
        for graph in (False, True):
            model = build(model_name, mode, the_lut, backend, rule, x, dev).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss_fn = torch.nn.CrossEntropyLoss()
            fwd = GraphedTraining(model) if graph else model

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(fwd(x), y)
                loss.backward()
                opt.step()

            t = timed(step, args.train_iters)
            if graph:
                assert fwd.captured, "the training step was not captured"
                fwd.close()
            steps = math.ceil(EPOCH_IMAGES / args.batch)
            base.setdefault(graph, t)
            name = label + (" + CUDA graph" if graph else "")
            rows.append({"model": model_name, "config": name, "cuda_graph": graph, "s_per_step": t,
                         "epoch_s": t * steps, "vs_exact": t / base[graph],
                         "vs_exact_eager": t / base[False]})
            print(f"  {model_name} train {name}: {t * 1e3:.2f} ms/step, epoch {t * steps:.1f} s, "
                  f"{t / base[graph]:.2f}x exact", file=sys.stderr, flush=True)
            del model, opt, fwd
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,vgg16")
    ap.add_argument("--train-models", default="resnet20")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--train-iters", type=int, default=10)
    ap.add_argument("--lut", default="mul8u_17C8")
    ap.add_argument("--lut-nf", default="mul8u_2NDH", help="a LUT without a cheap factorisation")
    ap.add_argument("--no-stats", dest="stats", action="store_false",
                    help="skip the run with operand statistics recorded")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_models.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 3
    dev = torch.device("cuda")
    lut, lut_nf = load_lut(args.lut), load_lut(args.lut_nf)
    inf_rows, train_rows = [], []
    for m in [m for m in args.models.split(",") if m]:
        inf_rows += inference(m, args, dev, lut, lut_nf)
    for m in [m for m in args.train_models.split(",") if m]:
        train_rows += training(m, args, dev, lut, lut_nf)
    print(f"\nInference, batch {args.batch} (images/s, higher is better)")
    print("| model | configuration | ms / batch | images/s |")
    print("|---|---|---|---|")
    for r in inf_rows:
        print(f"| {r['model']} | {r['config']} | {r['s_per_batch'] * 1e3:.2f} | "
              f"{r['images_per_s']:,.0f} |")
        if "combine_s" in r:
            print(f"| {r['model']} | ... combining the counts, once per evaluation | "
                  f"{r['combine_s'] * 1e3:.2f} | - |")
    if train_rows:
        print(f"\nTraining, batch {args.batch} (SGD step; epoch = {math.ceil(EPOCH_IMAGES / args.batch)} "
              "steps, synthetic data on the GPU)")
        print("| model | configuration | ms / step | epoch s | vs exact (same mode) | vs exact eager |")
        print("|---|---|---|---|---|---|")
        for r in train_rows:
            print(f"| {r['model']} | {r['config']} | {r['s_per_step'] * 1e3:.2f} | "
                  f"{r['epoch_s']:.1f} | {r['vs_exact']:.2f}x | {r['vs_exact_eager']:.2f}x |")
    meta = {**gpu_meta(dev),
            "batch": args.batch, "iters": args.iters, "lut": args.lut, "lut_nf": args.lut_nf,
            "goals": {"resnet20_approx_images_per_s": 40000, "error_aware_epoch_vs_exact": 3.0}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "inference": inf_rows, "training": train_rows},
                                   indent=2) + "\n")
    print(f"\nwrote {args.out} ({meta['device']}, {meta['date']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
