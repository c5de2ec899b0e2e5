"""GPU kernel benchmark: T-MAC/s of every backend per layer shape, with cuDNN as the baseline.

Shapes: the distinct conv layers of ResNet-20 / ResNet-56 (same shapes, other counts) and
VGG-16 for CIFAR at batch 256, and a 4096^3 GEMM. Per shape, in one run on one card:

- ``cudnn_fp32`` / ``cudnn_tf32``: exact float convolution (the baseline; matmul for the GEMM)
- ``int_mm``: torch._int_mm int8 GEMM (GEMM only)
- ``torch``: the torch backend's LUT GEMM on CUDA (ResNet shapes only; ``--torch-all``)
- ``lut``: the triton backend's LUT kernel (per-tap tables, or the direct kernel when the
  tables would not fit in L2 -- the ``kernel`` column says which)
- ``direct``: the triton direct-gather kernel forced
- ``dec:<LUT>``: the decomposed backend for exactly factorisable LUTs (int8 GEMM terms in
  brackets); ``exact`` is the quantized (exact-product) path of both GPU backends

Every time is a whole backend call (operand preparation included: activation codes,
per-call weight tables, as in training where the weights change every step), median of
``--repeat`` timed loops after warm-up, CUDA events. Two tables: calls issued from Python
(small layers are then bound by the host: launches and Python around them) and the same
calls captured once in a CUDA graph and replayed (the GPU time alone; what evaluation and
training replay, ``GraphedModel`` / ``GraphedTraining``; ``--no-graph`` skips it). ``lut+cache`` and ``dec+cache`` are the
same calls with the backends' weight cache on (inference: the layer hands the same weight codes
every call, so the per-tap tables / weight maps are built once).
Activation and weight codes are uniform random (the worst case for L1 reuse in the LUT
kernels; real post-ReLU activations are more concentrated). Prints one table and writes
``benchmarks/results/gpu_kernels.json``.

    PYTHONPATH=src python benchmarks/gpu_kernels.py [--quick] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from _machine import evoapprox_luts, gpu_meta, shared_data

ROOT = Path(__file__).resolve().parents[1]

# (name, count in ResNet-20, count in ResNet-56, C, H, OC, k, stride, pad)
RESNET = [
    ("stem 3-16@32", 1, 1, 3, 32, 16, 3, 1, 1),
    ("16-16@32", 6, 18, 16, 32, 16, 3, 1, 1),
    ("16-32@32 s2", 1, 1, 16, 32, 32, 3, 2, 1),
    ("16-32 1x1 s2", 1, 1, 16, 32, 32, 1, 2, 0),
    ("32-32@16", 5, 17, 32, 16, 32, 3, 1, 1),
    ("32-64@16 s2", 1, 1, 32, 16, 64, 3, 2, 1),
    ("32-64 1x1 s2", 1, 1, 32, 16, 64, 1, 2, 0),
    ("64-64@8", 5, 17, 64, 8, 64, 3, 1, 1),
]
# (name, count in VGG-16, C, H, OC)
VGG = [
    ("vgg 3-64@32", 1, 3, 32, 64), ("vgg 64-64@32", 1, 64, 32, 64),
    ("vgg 64-128@16", 1, 64, 16, 128), ("vgg 128-128@16", 1, 128, 16, 128),
    ("vgg 128-256@8", 1, 128, 8, 256), ("vgg 256-256@8", 2, 256, 8, 256),
    ("vgg 256-512@4", 1, 256, 4, 512), ("vgg 512-512@4", 2, 512, 4, 512),
    ("vgg 512-512@2", 3, 512, 2, 512),
]
DEC_LUTS = ["mul8s_1L12", "mul8s_1L2H", "mul8u_17C8"]   # error ranks 1, 2, 4
LUT_FOR_KERNEL = "mul8u_2NDH"                          # rank 159: LUT kernels only


def time_call(fn, repeat: int, min_ms: float = 30.0) -> float:
    """Median seconds per call over ``repeat`` timed loops (each >= min_ms when possible)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    one = max(start.elapsed_time(end), 1e-3)
    n = max(1, min(200, int(min_ms / one)))
    times = []
    for _ in range(repeat):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / n / 1e3)
    return statistics.median(times)


def time_graph(fn, repeat: int, min_ms: float = 30.0) -> float:
    """Like :func:`time_call`, but ``fn`` captured once in a CUDA graph and replayed: the GPU
    time of the call without the host work around its launches."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    t = time_call(graph.replay, repeat, min_ms)
    del graph
    return t


class Timer:
    """Fills ``row['ms'][key]`` (eager calls) and ``row['graph_ms'][key]`` (graph replay)."""

    def __init__(self, args):
        self.args = args

    def __call__(self, row, key, fn, repeat=None, min_ms=30.0, graph=True):
        repeat = repeat or self.args.repeat
        row.setdefault("ms", {})[key] = time_call(fn, repeat, min_ms) * 1e3
        if graph and not self.args.no_graph:
            try:
                row.setdefault("graph_ms", {})[key] = time_graph(fn, repeat, min_ms) * 1e3
            except RuntimeError as e:       # a call that cannot be captured: no graph column
                print(f"  {row['name']} {key}: not captured ({str(e).splitlines()[0][:120]})",
                      file=sys.stderr, flush=True)
                torch.cuda.synchronize()


def make_problem(B, C, H, W, OC, k, stride, pad, lut, gen, dev):
    from axcnn.ops import LUTTensors
    from axcnn.ops.problem import ConvGeometry, IntConvProblem

    signed = lut.signed
    lo = -128 if signed else 0
    qa = torch.randint(lo, lo + 256, (B, C, H, W), generator=gen, device=dev).float()
    qw = torch.randint(lo, lo + 256, (OC, C, k, k), generator=gen, device=dev).float()
    n_a = 0.0 if signed else -7.0
    n_w = torch.zeros(OC, device=dev) if signed else -torch.randint(
        0, 200, (OC,), generator=gen, device=dev).float()
    lt = LUTTensors.from_lut(lut, dev)
    return IntConvProblem(qa, qw, n_a, n_w, ConvGeometry((stride, stride), (pad, pad)),
                          lt.table, lt.a_offset, lt.w_offset, signed)


def _rates(row) -> None:
    row["tmacs"] = {kk: row["macs"] / (v * 1e-3) / 1e12 for kk, v in row["ms"].items()}
    row["graph_tmacs"] = {kk: row["macs"] / (v * 1e-3) / 1e12 for kk, v in row["graph_ms"].items()}


def conv_rows(args, luts, dev):
    from axcnn.errors import BackendUnavailable
    from axcnn.ops import get_backend
    from axcnn.ops.decomposed import factorisation_for
    import axcnn.ops.triton_backend as tbm

    tri, dec, tor = (get_backend(k, dev) for k in ("triton", "decomposed", "torch"))
    tbm.WEIGHT_CACHE = False  # per-call weight tables unless a column says +cache
    gen = torch.Generator(device=dev).manual_seed(0)
    B = args.batch
    shapes = [dict(name=n, net="resnet", n20=c20, n56=c56, C=C, H=H, OC=OC, k=k, s=s, p=p)
              for n, c20, c56, C, H, OC, k, s, p in RESNET]
    if not args.quick:
        shapes += [dict(name=n, net="vgg", nvgg=c, C=C, H=H, OC=OC, k=3, s=1, p=1)
                   for n, c, C, H, OC in VGG]
    rows = []
    timer = Timer(args)
    for sh in shapes:
        C, H, OC, k, s, p = sh["C"], sh["H"], sh["OC"], sh["k"], sh["s"], sh["p"]
        oh = (H + 2 * p - k) // s + 1
        macs = B * oh * oh * OC * C * k * k
        row = dict(sh, B=B, M=B * oh * oh, K=C * k * k, N=OC, macs=macs, ms={}, graph_ms={})
        x = torch.randn(B, C, H, H, device=dev)
        w = torch.randn(OC, C, k, k, device=dev)
        for mode, tf32 in (("cudnn_fp32", False), ("cudnn_tf32", True)):
            torch.backends.cudnn.allow_tf32 = tf32
            timer(row, mode, lambda: F.conv2d(x, w, None, s, p))
        torch.backends.cudnn.allow_tf32 = True
        p_lut = make_problem(B, C, H, H, OC, k, s, p, luts[LUT_FOR_KERNEL], gen, dev)
        shape = tbm.ConvShape.of(p_lut)
        NP = tbm.padded_n(shape.Ng)
        row["kernel"] = tbm.lut_mode(shape, 256)
        if row["kernel"] == "tap" and shape.K * 256 * NP * 2 > tbm.TAP_TABLE_MAX:
            row["kernel"] = "tap/chunked"
        timer(row, "lut", lambda: tri.conv2d_acc(p_lut))
        tbm.WEIGHT_CACHE = True
        timer(row, "lut+cache", lambda: tri.conv2d_acc(p_lut))
        tbm.WEIGHT_CACHE = False
        if args.direct and macs < 2e9:
            tbm.FORCE_MODE = "direct"
            timer(row, "direct", lambda: tri.conv2d_acc(p_lut), 1, min_ms=1, graph=False)
            tbm.FORCE_MODE = None
        if sh["net"] == "resnet" or args.torch_all:
            timer(row, "torch", lambda: tor.conv2d_acc(p_lut), max(1, args.repeat // 2),
                  min_ms=1, graph=False)
        p_ex = make_problem(B, C, H, H, OC, k, s, p, luts["mul8u_1JFF"], gen, dev)
        p_ex.table = None
        p_ex.a_offset = p_ex.w_offset = 0
        timer(row, "exact", lambda: dec.conv2d_acc(p_ex))
        for name in DEC_LUTS:
            pr = make_problem(B, C, H, H, OC, k, s, p, luts[name], gen, dev)
            f = factorisation_for(pr.table, luts[name].signed).factorisation
            try:
                timer(row, f"dec:{name}[{f.n_gemms}]", lambda: dec.conv2d_acc(pr))
                if name == DEC_LUTS[-1]:
                    tbm.WEIGHT_CACHE = True
                    timer(row, f"dec:{name}+cache", lambda: dec.conv2d_acc(pr))
                    tbm.WEIGHT_CACHE = False
            except BackendUnavailable:
                pass
        _rates(row)
        rows.append(row)
        print(f"  {sh['name']}: " + ", ".join(f"{kk} {v:.3f} ms" for kk, v in row["ms"].items()),
              file=sys.stderr, flush=True)
    return rows


def gemm_row(args, luts, dev):
    from axcnn.ops import get_backend
    from axcnn.ops.decomposed import factorisation_for

    n = args.gemm
    gen = torch.Generator(device=dev).manual_seed(1)
    row = dict(name=f"GEMM {n}^3", net="gemm", M=n, K=n, N=n, macs=n ** 3, ms={}, graph_ms={})
    timer = Timer(args)
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    for mode, tf32 in (("cublas_fp32", False), ("cublas_tf32", True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        timer(row, mode, lambda: a @ b)
    torch.backends.cuda.matmul.allow_tf32 = False
    a8 = torch.randint(-128, 128, (n, n), generator=gen, device=dev, dtype=torch.int8)
    b8 = torch.randint(-128, 128, (n, n), generator=gen, device=dev, dtype=torch.int8)
    b8c = b8.t().contiguous().t()
    timer(row, "int_mm", lambda: torch._int_mm(a8, b8c))
    ai = torch.randint(0, 256, (n, 1, n), generator=gen, device=dev)
    wi = torch.randint(0, 256, (1, n, n), generator=gen, device=dev)
    tri, dec = get_backend("triton", dev), get_backend("decomposed", dev)
    lut = luts[LUT_FOR_KERNEL]
    table = torch.from_numpy(lut.table.copy()).to(dev)
    timer(row, "lut", lambda: tri.lut_gemm(ai, wi, table), 1, min_ms=1, graph=False)
    row["kernel"] = "tap/chunked"
    for name in ["mul8u_1JFF"] + DEC_LUTS:
        t = torch.from_numpy(luts[name].table.copy()).to(dev)
        f = factorisation_for(t, False).factorisation
        key = "exact" if name == "mul8u_1JFF" else f"dec:{name}[{f.n_gemms}]"
        timer(row, key, lambda: dec.lut_gemm(ai, wi, t))
    _rates(row)
    print(f"  {row['name']}: " + ", ".join(f"{kk} {v:.3f} ms" for kk, v in row["ms"].items()),
          file=sys.stderr, flush=True)
    return row


def summary(rows, ms: str = "ms", rates: str = "tmacs"):
    """Per backend: ResNet-20/56 totals, the mean rate over the ResNet shapes, and the rates of
    the K >= 576 shapes (``ms``/``rates``: the eager or the graph-replay fields)."""
    res = [r for r in rows if r["net"] == "resnet"]
    out = {}
    if not res or not res[0][ms]:
        return out
    for key in ("lut", "lut+cache", "torch", "exact", "cudnn_fp32", "cudnn_tf32") + tuple(
            k for k in res[0][ms] if k.startswith("dec:")):
        if not all(key in r[ms] for r in res):
            continue
        mean_rate = statistics.mean(r[rates][key] for r in res)
        for net, cnt in (("resnet20", "n20"), ("resnet56", "n56")):
            tot_mac = sum(r["macs"] * r[cnt] for r in res)
            tot_ms = sum(r[ms][key] * r[cnt] for r in res)
            out.setdefault(key, {})[net] = {"ms": tot_ms, "tmacs": tot_mac / (tot_ms * 1e-3) / 1e12}
        out[key]["mean_tmacs_over_resnet_shapes"] = mean_rate
    big = [r for r in rows if r["net"] != "gemm" and r["K"] >= 576]
    for key in big[0][ms] if big else []:
        if key.startswith("dec:") or key == "exact":
            vals = [r[rates][key] for r in big if key in r[rates]]
            out.setdefault(key, {})["min_tmacs_K_ge_576"] = min(vals)
            out[key]["mean_tmacs_K_ge_576"] = statistics.mean(vals)
    return out


def print_table(rows, rates: str, title: str) -> None:
    keys = []
    for r in rows:
        for kk in r[rates]:
            if kk not in keys:
                keys.append(kk)
    head = ["layer", "MAC (G)", "kernel"] + keys
    table = [head]
    for r in rows:
        table.append([r["name"], f"{r['macs'] / 1e9:.2f}", r.get("kernel", "")] +
                     [f"{r[rates][kk]:.2f}" if kk in r[rates] else "-" for kk in keys])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    print(title)
    print("| " + " | ".join(h.ljust(wd) for h, wd in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    for row in table[1:]:
        print("| " + " | ".join(c.ljust(wd) for c, wd in zip(row, widths)) + " |")


def print_summary(summ, title: str) -> None:
    print(f"\n{title}:")
    for key, v in summ.items():
        print(f"  {key}: " + ", ".join(
            f"{kk} {vv['ms']:.2f} ms = {vv['tmacs']:.2f} T-MAC/s" if isinstance(vv, dict)
            else f"{kk} {vv:.2f}" for kk, vv in v.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gemm", type=int, default=4096)
    ap.add_argument("--quick", action="store_true", help="ResNet shapes only, no direct column")
    ap.add_argument("--torch-all", action="store_true")
    ap.add_argument("--direct", action="store_true", help="also time the direct-gather kernel")
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph replay timings")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_kernels.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 3
    dev = torch.device("cuda")
    luts = evoapprox_luts()
    if not luts:
        print(f"needs the shared EvoApprox tables in {shared_data()} (set AXCNN_SHARED_DATA)", file=sys.stderr)
        return 2
    rows = conv_rows(args, luts, dev)
    if args.gemm:
        rows.append(gemm_row(args, luts, dev))
    print_table(rows, "tmacs",
                "T-MAC/s per backend (whole backend call issued from Python; higher is better)")
    summ = summary(rows)
    print_summary(summ, "summary (calls from Python)")
    summ_graph = summary(rows, "graph_ms", "graph_tmacs")
    if summ_graph:
        print()
        print_table(rows, "graph_tmacs",
                    "T-MAC/s per backend (the same calls replayed from a CUDA graph)")
        print_summary(summ_graph, "summary (graph replay)")
    meta = {**gpu_meta(dev), "batch": args.batch,
            "repeat": args.repeat, "lut_for_lut_kernel": LUT_FOR_KERNEL,
            "goals": {"lut_mean_tmacs_resnet20": 2.2, "decomposed_tmacs_K_ge_576_rank_le_4": 10.0}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summ,
                                    "summary_graph": summ_graph}, indent=2) + "\n")
    print(f"\nwrote {args.out} ({meta['device']}, {meta['date']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
