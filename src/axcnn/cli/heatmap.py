"""``axcnn heatmap``: operand heat maps of a model and LUT errors weighted by them.

Reads the operand statistics recorded by ``axcnn train --conv_type 5`` (one
(channels, 2^a, 2^w) count array per layer) from --stats FILE|RUN_DIR or, by default, from
<runs-dir>/<model>-<dataset>/stats-<bits>/. Writes per-layer heat maps (log scale; --mode sum,
channels or both), and for every --lut the workload-weighted error (the seed's mean_ae_cnn,
per layer and for the whole model; statistics recorded at more bits than the LUT are rebinned)
with overlays of the LUT's error map on where the operands fall.

Output: <runs-dir>/<model>-<dataset>/heatmap/<stats run>/ (or --out) with PNGs, heatmap.json,
operands.npz, lut_<name>-<hash>.json and lut_errors.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("heatmap", help="operand heat maps and workload-weighted LUT errors",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stats", type=Path, default=None,
                   help="operand_stats.npz or the statistics run directory holding it")
    p.add_argument("--model", "--model_name", dest="model", default="lenet5")
    p.add_argument("--dataset", default=None, help="dataset (default: the model's)")
    p.add_argument("--bits", "--bit_width", dest="bits", type=int, default=8)
    p.add_argument("--signed", action="store_true")
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--layer", nargs="+", action="extend", default=[], help="only these layers (default all)")
    p.add_argument("--mode", choices=["sum", "channels", "both"], default="sum",
                   help="sum over output channels (default) or one map per channel")
    p.add_argument("--max-channels", type=int, default=16)
    p.add_argument("--lut", nargs="+", action="extend", default=[], metavar="LUT",
                   help="LUT file or builtin:NAME whose error to weigh by the recorded operands")
    p.add_argument("--lut-signed", action="store_true", help="read .npy LUTs as signed")
    p.add_argument("--no-overlay", action="store_true", help="skip the LUT overlay figures")
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--dpi", type=int, default=150)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.heatmaps import default_out_dir, find_stats, load_stats, run_heatmap
    from ..lut import load_lut
    from ..models import model_info, resolve_model_name

    if args.stats is not None:
        stats_path = args.stats
    else:
        model = resolve_model_name(args.model)
        dataset = args.dataset or model_info(model).default_dataset
        stats_path = find_stats(args.runs_dir, model, dataset, args.bits, args.signed, args.per_channel)
    stats = load_stats(stats_path)  # validate before loading LUTs
    signed = any(stats.fmt(n).get("signed") for n in stats.layers) or args.lut_signed
    bits = max(stats.fmt(n)["a_bits"] for n in stats.layers)
    # a built-in without '@<bits>' is generated at the statistics' width; files are read as they are
    luts = [load_lut(src, signed=None if "@" in src else signed,
                     bits=bits if src.startswith("builtin:") and "@" not in src else None)
            for src in args.lut]
    out = args.out or default_out_dir(stats.path)
    res = run_heatmap(stats.path, out, layers=args.layer or None, mode=args.mode, luts=luts,
                      overlay=not args.no_overlay, max_channels=args.max_channels, dpi=args.dpi,
                      progress=not args.no_progress)
    print(f"heat maps of {len(res['layers'])} layer(s): {res['dir']}")
    for name, s in res["layers"].items():
        print(f"  {name:<28} {s['multiplications']:>14,d} products  activation 0: "
              f"{100 * s['zero_activation_fraction']:5.1f}%  cells used: {100 * s['occupied_fraction']:5.1f}%")
    for r in res["luts"]:
        print(f"  LUT {r['name']}: mean_ae_cnn {r['mean_ae_cnn']:.4g} (uniform mean_ae {r['mean_ae']:.4g})"
              + ("  [statistics rebinned to the LUT's bits]" if r["rebinned"] else ""))
    return 0
