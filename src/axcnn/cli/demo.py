"""``axcnn demo``: the main job (LeNet-5 exact -> 8-bit -> approximate) with an accuracy table."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="LeNet-5 through exact, 8-bit quantized and approximate stages")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/demo"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--dataset", default="auto", help="auto (MNIST if present, else Fashion-MNIST), mnist, fashion_mnist")
    p.add_argument("--download", action="store_true", help="download MNIST when no dataset is found")
    p.add_argument("--device", default="auto")
    p.add_argument("--exact-epochs", type=int, default=6)
    p.add_argument("--quant-epochs", type=int, default=1)
    p.add_argument("--retrain-epochs", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import RunEnv
    from ..train.demo import DemoOptions, format_table, run_demo
    from ..train.pipeline import resolve_device

    env = RunEnv(runs_dir=args.runs_dir, data_dir=args.data_dir, device=resolve_device(args.device),
                 progress=not args.no_progress, download=args.download)
    summary = run_demo(env, DemoOptions(args.exact_epochs, args.quant_epochs, args.retrain_epochs, args.dataset))
    print()
    print(format_table(summary))
    print(f"\nrun directories and summary.json under {args.runs_dir} ({summary['seconds']:.0f} s)")
    return 0
