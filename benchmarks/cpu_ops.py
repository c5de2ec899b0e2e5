"""CPU benchmark: torch backend vs reference vs exact float, per layer shape and whole LeNet-5
(also with operand statistics recorded).

Prints one table and writes JSON under benchmarks/results/. The baseline (exact float conv on
the same CPU) is measured in the same run, so ratios hold across machines.

    python benchmarks/cpu_ops.py [--batch 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from axcnn.lut import builtin
from axcnn.models import create_model
from axcnn.nn import ConversionPlan, Mode, convert_, record_operands
from axcnn.ops import LUTTensors, approx_conv2d
from axcnn.quant import QuantSpec, calibrate, qparams_from_range, weight_qparams

# (name, C_in, C_out, H, kernel, stride, padding)
SHAPES = [
    ("lenet5.conv1", 1, 6, 32, 5, 1, 0),
    ("lenet5.conv2", 6, 16, 14, 5, 1, 0),
    ("resnet20.stem", 3, 16, 32, 3, 1, 1),
    ("resnet20.layer1", 16, 16, 32, 3, 1, 1),
    ("resnet20.layer2.down", 16, 32, 32, 3, 2, 1),
    ("resnet20.layer2", 32, 32, 16, 3, 1, 1),
    ("resnet20.layer3.down", 32, 64, 16, 3, 2, 1),
    ("resnet20.layer3", 64, 64, 8, 3, 1, 1),
]


def timeit(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def layer_rows(batch: int, repeat: int) -> list[dict]:
    torch.manual_seed(0)
    lut = builtin("drum4", 8, False)
    lut_t = LUTTensors.from_lut(lut)
    spec = QuantSpec()
    rows = []
    for name, cin, cout, h, k, s, p in SHAPES:
        x = torch.relu(torch.randn(batch, cin, h, h))
        w = torch.randn(cout, cin, k, k) * 0.1
        aq = qparams_from_range(x.min(), x.max(), 8, False)
        wq = weight_qparams(w, 8, False, False)
        oh = (h + 2 * p - k) // s + 1
        macs = batch * cout * oh * oh * cin * k * k
        kw = dict(stride=s, padding=p, a_qparams=aq, w_qparams=wq, spec=spec)
        with torch.no_grad():
            t_float = timeit(lambda: F.conv2d(x, w, None, s, p), repeat)
            t_quant = timeit(lambda: approx_conv2d(x, w, lut=None, backend="torch", **kw), repeat)
            t_lut = timeit(lambda: approx_conv2d(x, w, lut=lut_t, backend="torch", **kw), repeat)
            xs = x[:1, :, : min(h, 8), : min(h, 8)]  # the reference is pure Python: a small slice
            ref_macs = cout * ((xs.shape[2] + 2 * p - k) // s + 1) ** 2 * cin * k * k
            t_ref = timeit(lambda: approx_conv2d(xs, w, lut=lut_t, backend="reference", **kw), 1)
        rows.append({"layer": name, "macs": macs, "float_ms": 1e3 * t_float, "quantized_ms": 1e3 * t_quant,
                     "lut_ms": 1e3 * t_lut, "lut_gmac_s": macs / t_lut / 1e9,
                     "reference_gmac_s": ref_macs / t_ref / 1e9, "lut_vs_float": t_lut / t_float})
    return rows


def lenet_rows(batch: int, repeat: int) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(batch, 1, 32, 32)
    model = create_model("lenet5").eval()
    out = []
    with torch.no_grad():
        t_float = timeit(lambda: model(x), repeat)
        convert_(model, ConversionPlan(mode=Mode.QUANTIZED))
        calibrate(model, [x])
        t_quant = timeit(lambda: model(x), repeat)
        convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut=builtin("drum4", 8, False)))
        t_lut = timeit(lambda: model(x), repeat)
        with record_operands(model) as rec:
            t_stats = timeit(lambda: model(x), repeat)
            t0 = time.perf_counter()
            rec.histograms      # the one combination with the weights, per evaluation
            t_comb = time.perf_counter() - t0
    for mode, t in (("exact float", t_float), ("quantized 8-bit", t_quant), ("approximate (LUT)", t_lut),
                    ("approximate + operand statistics", t_stats)):
        out.append({"mode": mode, "ms": 1e3 * t, "images_s": batch / t, "vs_float": t / t_float})
    out[-1]["combine_ms"] = 1e3 * t_comb
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lenet-batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    layers = layer_rows(args.batch, args.repeat)
    lenet = lenet_rows(args.lenet_batch, args.repeat)
    meta = {"date": dt.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__), "batch": args.batch,
            "lenet_batch": args.lenet_batch, "lut": "builtin:drum4 (8-bit unsigned)"}
    print(f"CPU ops, {meta['date']}, {meta['threads']} threads, torch {meta['torch']}, batch {args.batch}")
    print(f"{'layer':<22}{'MMAC':>8}{'float ms':>10}{'quant ms':>10}{'LUT ms':>10}{'LUT GMAC/s':>12}{'ref GMAC/s':>12}{'LUT/float':>11}")
    for r in layers:
        print(f"{r['layer']:<22}{r['macs'] / 1e6:>8.1f}{r['float_ms']:>10.2f}{r['quantized_ms']:>10.2f}"
              f"{r['lut_ms']:>10.2f}{r['lut_gmac_s']:>12.3f}{r['reference_gmac_s']:>12.5f}{r['lut_vs_float']:>10.1f}x")
    print(f"\nLeNet-5 inference, batch {args.lenet_batch}")
    print(f"{'mode':<34}{'ms':>10}{'images/s':>12}{'vs float':>10}")
    for r in lenet:
        print(f"{r['mode']:<34}{r['ms']:>10.2f}{r['images_s']:>12.0f}{r['vs_float']:>9.1f}x")
        if "combine_ms" in r:
            print(f"{'  combining the counts, once':<34}{r['combine_ms']:>10.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cpu_ops-{meta['date']}.json"
    path.write_text(json.dumps({"meta": meta, "layers": layers, "lenet5": lenet}, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
