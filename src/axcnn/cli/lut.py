"""``axcnn lut``: inspect, measure, convert and plot multiplier lookup tables.

LUT arguments are files (.npy seed format, .npz axcnn format, .bin TFApprox format) or
``builtin:NAME[@8u]`` (see ``axcnn lut list``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import accept_verbosity


def add_parser(sub) -> None:
    p = sub.add_parser("lut", help="inspect, measure, convert and plot multiplier LUTs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lsub = p.add_subparsers(dest="lut_command", metavar="ACTION")
    lsub.required = True
    accept_verbosity(lsub)

    def lut_arg(q):
        q.add_argument("lut", help="LUT file or builtin:NAME")
        q.add_argument("--signed", action="store_true", default=None,
                       help="interpret the table as a signed multiplier")
        q.add_argument("--bits", type=int, default=None, help="bit width (built-ins; checked for files)")

    q = lsub.add_parser("info", help="shape, format, hash and provenance")
    lut_arg(q)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_info)

    q = lsub.add_parser("metrics", help="error metrics against the exact product")
    lut_arg(q)
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--histogram", type=Path, default=None,
                   help="operand histogram (.npy array or operand_stats.npz) for workload-weighted metrics")
    q.set_defaults(func=run_metrics)

    q = lsub.add_parser("convert", help="write a LUT in another format (.npy, .npz, .bin)")
    lut_arg(q)
    q.add_argument("out", type=Path, help="output file; the extension selects the format")
    q.add_argument("--name", default=None, help="name stored in .npz metadata")
    q.set_defaults(func=run_convert)

    q = lsub.add_parser("plot", help="error map PNG (x = weights, y = activations)")
    lut_arg(q)
    q.add_argument("--out", type=Path, default=None, help="PNG path (default <name>_<kind>.png)")
    q.add_argument("--kind", default="abs", choices=["abs", "signed", "relative", "output"])
    q.set_defaults(func=run_plot)

    q = lsub.add_parser("list", help="built-in multiplier families")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_list)


def _load(args):
    from ..lut import load_lut

    return load_lut(args.lut, signed=args.signed, bits=args.bits)


def load_histogram(path: Path):
    """An operand histogram from a .npy array or an operand_stats .npz (summed over layers)."""
    import numpy as np

    from ..errors import DataError
    from ..nn import load_operand_stats

    if not path.is_file():
        raise DataError(f"histogram file '{path}' does not exist")
    try:
        if path.suffix == ".npz":
            hists, _ = load_operand_stats(path)
            if not hists:
                raise DataError(f"'{path}' holds no histograms")
            shapes = {h.shape[-2:] for h in hists.values()}
            if len(shapes) != 1:
                raise DataError(f"'{path}' mixes operand formats {sorted(shapes)}")
            return sum(h.reshape(-1, *h.shape[-2:]).sum(axis=0) for h in hists.values())
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, KeyError) as exc:
        raise DataError(f"cannot read histogram '{path}': {exc}") from None


def run_info(args) -> int:
    lut = _load(args)
    info = lut.metadata()
    info["shape"] = list(lut.table.shape)
    info["min"] = int(lut.table.min())
    info["max"] = int(lut.table.max())
    info["is_exact"] = lut.is_exact()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k in ("name", "a_bits", "w_bits", "signed", "shape", "min", "max", "is_exact", "sha256"):
            print(f"{k:>10}: {info[k]}")
        print(f"{'provenance':>10}: {json.dumps(info['provenance'])}")
    return 0


def run_metrics(args) -> int:
    from ..lut import lut_metrics, weighted_metrics

    lut = _load(args)
    m = {"name": lut.name, "bits": lut.bits_label, **lut_metrics(lut)}
    if args.histogram is not None:
        m["weighted"] = weighted_metrics(lut, load_histogram(args.histogram))
        m["mae_cnn"] = m["weighted"]["mae"]
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"{lut.name} ({lut.bits_label})")
    for k in ("mae", "wce", "mred", "ep", "bias", "mse", "nmed"):
        print(f"  {k:>5}: {m[k]:.6g}")
    if "weighted" in m:
        print("  workload-weighted:")
        for k, v in m["weighted"].items():
            print(f"  {k:>5}: {v:.6g}")
    return 0


def run_convert(args) -> int:
    from ..lut import save_lut

    lut = _load(args)
    if args.name:
        lut = lut.with_name(args.name)
    out = save_lut(lut, args.out)
    print(f"wrote {out} ({lut.bits_label}, sha256 {lut.short_hash})")
    return 0


def run_plot(args) -> int:
    from ..viz.lut_plots import plot_error_map

    lut = _load(args)
    out = args.out or Path(f"{lut.name}_{args.kind}.png")
    plot_error_map(lut, out, args.kind)
    print(f"wrote {out}")
    return 0


def run_list(args) -> int:
    from ..lut import list_builtins

    fams = list_builtins()
    if args.json:
        print(json.dumps([{"family": f.name, "pattern": f.pattern, "params": list(f.params),
                           "summary": f.summary, "example": f"builtin:{f.example}"} for f in fams], indent=2))
        return 0
    print("Built-in multipliers (use as builtin:NAME or builtin:NAME@8u / @4s / @8x4u):")
    for f in fams:
        print(f"  {('builtin:' + f.example):<20} {f.summary}")
    print("Bit widths 2..8, signed (sign-magnitude around the unsigned core) or unsigned.")
    return 0
