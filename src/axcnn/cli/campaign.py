"""``axcnn campaign``: run a plan of stages and LUTs in time-boxed chunks; tabulate the results.

    axcnn campaign run PLAN.yaml --time-budget 20 [--prune]   # exit 75 while unfinished
    axcnn campaign run PLAN.yaml --shard 2/4                  # the approximate runs of LUTs 2, 6, 10, ...
    axcnn campaign table PLAN.yaml [--json OUT.json] [--figure OUT.png]   # table (and figure)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import accept_verbosity


def add_parser(sub) -> None:
    p = sub.add_parser("campaign", help="run a plan of stages x LUTs in time-boxed chunks; tables",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="campaign_command", metavar="ACTION")
    csub.required = True
    accept_verbosity(csub)
    for name, helptext in (("run", "run (or continue) the plan"), ("table", "table of finished runs")):
        q = csub.add_parser(name, help=helptext)
        q.add_argument("plan", type=Path, help="campaign plan (YAML)")
        q.add_argument("--runs-dir", type=Path, default=Path("runs"))
        q.add_argument("--data-dir", type=Path, default=None)
        q.add_argument("--device", default="auto")
        q.add_argument("--backend", default="auto")
        if name == "run":
            q.add_argument("--time-budget", type=float, default=None, metavar="MINUTES")
            q.add_argument("--prune", action="store_true", help="delete last.pt of finished runs (best.pt stays)")
            q.add_argument("--download", action="store_true")
            q.add_argument("--no-progress", action="store_true")
            q.add_argument("--shard", default=None, metavar="K/N",
                           help="run only the approximate runs of every N-th LUT from the K-th "
                                "(N processes in parallel; exact and quantized must be finished)")
            q.set_defaults(func=run)
        else:
            q.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
            q.add_argument("--figure", type=Path, default=None,
                           help="also draw the accuracies as a PNG (needs matplotlib)")
            q.set_defaults(func=table)


def _env(args, deadline=None):
    from ..ops import Backend
    from ..train import RunEnv
    from ..train.pipeline import resolve_device

    return RunEnv(runs_dir=args.runs_dir, data_dir=args.data_dir, device=resolve_device(args.device),
                  backend=Backend.parse(args.backend), progress=not getattr(args, "no_progress", True),
                  download=getattr(args, "download", False), deadline=deadline)


def run(args) -> int:
    from ..train.campaign import load_plan, parse_shard, run_campaign
    from ..train.pipeline import EXIT_INCOMPLETE

    plan = load_plan(args.plan)
    shard = None if args.shard is None else parse_shard(args.shard)
    deadline = None if args.time_budget is None else time.monotonic() + 60.0 * args.time_budget
    out = run_campaign(plan, _env(args, deadline), prune=args.prune, shard=shard)
    part = "" if shard is None else f" (shard {shard[0]}/{shard[1]})"
    print(f"campaign {args.plan}{part}: {out['finished']}/{out['total']} runs finished in {out['seconds']:.0f} s"
          + ("" if out["complete"] else "; rerun to continue"))
    return 0 if out["complete"] else EXIT_INCOMPLETE


def table(args) -> int:
    from ..train.campaign import campaign_table, load_plan

    plan = load_plan(args.plan)
    md, data = campaign_table(plan, _env(args))
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if args.figure:
        from ..viz.campaign_plots import plot_campaign

        plot_campaign(data, args.figure, plan.title or f"{plan.model}, {plan.dataset}")
        print(f"wrote {args.figure}")
    return 0
