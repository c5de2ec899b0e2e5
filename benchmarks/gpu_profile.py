"""Where the time of a training step goes: a profile of ResNet-20 SGD steps on one GPU.

For each configuration (exact, 8-bit quantized, approximate + STE, approximate + error-aware
with ``auto`` and with ``triton``) it runs the real training loop (``axcnn.train.train_epoch``)
over a synthetic CIFAR-sized dataset on the device (crop/flip augmentation included) and prints:

- GPU ms / step (CUDA events around the epoch) and host ms / step (wall clock); when the two
  are close the step is bound by the GPU, when the host is slower it is bound by launches and
  host work;
- per step: kernel launches, host<-device copies and synchronisations (the CUDA runtime and
  driver calls the profiler saw);
- the top operators by GPU time and by host time.

Writes ``benchmarks/results/gpu_profile.json``.

    PYTHONPATH=src python benchmarks/gpu_profile.py [--batch 128] [--steps 40] [--top 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _machine import evoapprox_luts, gpu_meta

ROOT = Path(__file__).resolve().parents[1]

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC")
COPY_CALLS = ("cudaMemcpyAsync", "cudaMemcpy")


def dataset(n: int, dev):
    from axcnn.data import ImageDataset
    from axcnn.data.dataset import Augment

    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageDataset("synthetic", imgs, labels, imgs[:512].clone(), labels[:512].clone(),
                        [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3,
                        Augment.CROP_FLIP).to(dev)


def build(mode: str, lut, backend: str, rule: str, x, dev):
    from axcnn.models import create_model
    from axcnn.nn import ConversionPlan, Mode, convert_
    from axcnn.quant import calibrate

    torch.manual_seed(0)
    model = create_model("resnet20")
    if mode != "exact":
        convert_(model, ConversionPlan(mode=Mode.QUANTIZED if mode == "quantized" else Mode.APPROXIMATE,
                                       lut=lut if mode == "approximate" else None, backend=backend,
                                       grad_rule=rule, window=16))
    model = model.to(dev)
    if mode != "exact":
        calibrate(model, [x])
    return model


def profile_config(label, mode, lut, backend, rule, data, args, dev):
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from axcnn.train.loop import train_epoch

    x = data.train_images[: args.batch].float() / 255
    model = build(mode, lut, backend, rule, x, dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator(device=dev).manual_seed(0)
    steps = len(data.train_labels) // args.batch
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    graph = not args.no_cuda_graph
    train_epoch(model, data, opt, args.batch, gen, cuda_graph=graph)   # warm-up: compiles, caches
    sync()
    if cuda:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
    t0 = time.perf_counter()
    train_epoch(model, data, opt, args.batch, gen, cuda_graph=graph)
    if cuda:
        e.record()
    sync()
    host = (time.perf_counter() - t0) / steps
    gpu = s.elapsed_time(e) / 1e3 / steps if cuda else host
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        train_epoch(model, data, opt, args.batch, gen, cuda_graph=graph)
        sync()
    events = prof.key_averages()
    # kernels only: an operator's device time repeats the time of the kernels it launched
    busy = sum(ev.self_device_time_total for ev in events
               if ev.device_type == DeviceType.CUDA) / 1e3 / steps
    count = {ev.key: ev.count for ev in events}
    per_step = {
        "launches": sum(count.get(k, 0) for k in LAUNCH_CALLS) / steps,
        "syncs": sum(count.get(k, 0) for k in SYNC_CALLS) / steps,
        "copies": sum(count.get(k, 0) for k in COPY_CALLS) / steps,
        "item": count.get("aten::_local_scalar_dense", 0) / steps,
    }

    def top(attr):
        rows = sorted(events, key=lambda ev: getattr(ev, attr), reverse=True)[: args.top]
        return [{"op": ev.key[:70], "count_per_step": ev.count / steps,
                 "ms_per_step": getattr(ev, attr) / 1e3 / steps} for ev in rows]

    row = {"config": label, "gpu_ms_per_step": gpu * 1e3, "host_ms_per_step": host * 1e3,
           "kernel_ms_per_step": busy,
           "per_step": per_step, "top_gpu": top("self_device_time_total"),
           "top_host": top("self_cpu_time_total")}
    del model, opt
    torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40, help="steps per measured epoch")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--lut", default="mul8u_1DMU")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--no-cuda-graph", action="store_true",
                    help="train eagerly (default: train_epoch replays CUDA graphs on CUDA)")
    ap.add_argument("--configs", default="exact,quantized,ste,ea_auto,ea_triton")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_profile.json")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("needs a CUDA GPU (--device cpu for a smoke run)", file=sys.stderr)
        return 3
    dev = torch.device(args.device)
    lut = evoapprox_luts()[args.lut]
    data = dataset(args.batch * args.steps, dev)
    all_configs = {
        "exact": ("exact", "exact", None, "auto", "ste"),
        "quantized": ("8-bit quantized (STE)", "quantized", None, "auto", "ste"),
        "ste": (f"approx STE (auto, {lut.name})", "approximate", lut, "auto", "ste"),
        "ea_auto": (f"approx error-aware w16 (auto, {lut.name})", "approximate", lut, "auto", "error_aware"),
        "ea_triton": (f"approx error-aware w16 (triton, {lut.name})", "approximate", lut, "triton", "error_aware"),
    }
    rows = []
    for key in args.configs.split(","):
        label, *spec = all_configs[key]
        row = profile_config(label, *spec, data, args, dev)
        rows.append(row)
        ps = row["per_step"]
        print(f"\n## {label}: GPU {row['gpu_ms_per_step']:.2f} ms/step (kernels busy "
              f"{row['kernel_ms_per_step']:.2f}), host {row['host_ms_per_step']:.2f} ms/step; per step {ps['launches']:.0f} launches, {ps['syncs']:.1f} syncs, "
              f"{ps['copies']:.1f} copies, {ps['item']:.1f} .item()", flush=True)
        for name in ("top_gpu", "top_host"):
            print(f"  {name}:")
            for r in row[name]:
                print(f"    {r['ms_per_step']:8.3f} ms  x{r['count_per_step']:6.1f}  {r['op']}")
    base = rows[0]["gpu_ms_per_step"] if rows else 1.0
    print(f"\nResNet-20 training steps, batch {args.batch} (train_epoch, synthetic data on the GPU, "
          f"{'eager' if args.no_cuda_graph else 'CUDA graphs'})")
    print("| configuration | GPU ms/step | kernels busy ms | host ms/step | vs first | launches | syncs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['gpu_ms_per_step']:.2f} | {r['kernel_ms_per_step']:.2f} | {r['host_ms_per_step']:.2f} | "
              f"{r['gpu_ms_per_step'] / base:.2f}x | {r['per_step']['launches']:.0f} | {r['per_step']['syncs']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": {**(gpu_meta(dev) if dev.type == "cuda" else {"device": "cpu"}),
                                             "batch": args.batch, "lut": args.lut,
                                             "cuda_graph": not args.no_cuda_graph},
                                    "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
