"""``axcnn explore``: design-space exploration, from multiplier candidates to CNN accuracy.

Subcommands::

    axcnn explore run    SPEC.yaml [--dir DIR] [--workers N] [--executor local|ray] [--address A]
    axcnn explore run    --dir DIR                 # resume with the folder's saved spec
    axcnn explore status DIR [--json]
    axcnn explore export DIR [--csv FILE] [--parquet FILE] [--json FILE|-]
    axcnn explore pareto DIR [--cost power --cost area ...] [--out DIR] [--json]

An exploration keeps everything in one folder (default ``runs/explore/<name>``): the SQLite
results store, each candidate's LUT and work files, the CNN runs and the logs. A run that is
stopped (Ctrl-C, kill, power loss) resumes where it was: ``axcnn explore run`` again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import accept_verbosity
from ..errors import ConfigError

log = logging.getLogger("axcnn.explore")

DEFAULT_ROOT = Path("runs") / "explore"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "explore", help="design-space exploration: candidates -> LUT, hardware, CNN accuracy",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="explore_command", metavar="SUBCOMMAND")
    sub.required = True
    accept_verbosity(sub)

    r = sub.add_parser("run", help="run or resume an exploration",
                       description="Evaluate every candidate of the spec's sources (LUT, error "
                                   "metrics, hardware report, CNN accuracy) into the results "
                                   "store; finished candidates are never redone.")
    r.add_argument("spec", nargs="?", type=Path, help="spec file (YAML or JSON); omit with --dir "
                   "to resume with the folder's saved spec")
    r.add_argument("--dir", type=Path, help=f"exploration folder (default {DEFAULT_ROOT}/<name>)")
    r.add_argument("--executor", choices=("local", "ray"), help="override the spec's executor")
    r.add_argument("--workers", type=int, help="parallel workers (local: 1 = in this process)")
    r.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    r.add_argument("--gpus-per-cnn", type=float, help="Ray: GPUs per CNN evaluation")
    r.add_argument("--max-candidates", type=int, help="stop after this many candidates")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="the run's summary as JSON on stdout")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="what an exploration holds and whether it is running")
    s.add_argument("dir", type=Path)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    e = sub.add_parser("export", help="the results as the seed's CSV, Parquet or JSON")
    e.add_argument("dir", type=Path)
    e.add_argument("--csv", type=Path, help="seed CSV: file,area,power,delay,pda,mean_ae,"
                   "mean_ae_cnn,max_ae,accuracy")
    e.add_argument("--parquet", type=Path, help="every column (needs pyarrow)")
    e.add_argument("--json", metavar="FILE", help="every column as JSON ('-' for stdout)")
    e.add_argument("--all", action="store_true",
                   help="also failed/partial rows and rows of earlier settings")
    e.set_defaults(func=cmd_export)

    p = sub.add_parser("pareto", help="Pareto fronts (accuracy vs power, area, pda) as "
                       "figures and a table")
    p.add_argument("dir", type=Path)
    p.add_argument("--cost", action="append", default=[],
                   help="power, area, pda (default: these three), delay, energy, mae, w_mae")
    p.add_argument("--out", type=Path, help="figure folder (default DIR/pareto)")
    p.add_argument("--json", action="store_true", help="the fronts as JSON on stdout")
    p.set_defaults(func=cmd_pareto)


def cmd_run(args) -> int:
    from ..explore.runner import load_saved_spec, run_exploration
    from ..explore.spec import load_spec

    if args.spec is None and args.dir is None:
        raise ConfigError("give a spec file (axcnn explore run SPEC.yaml) or an exploration "
                          "folder to resume (axcnn explore run --dir DIR)")
    if args.spec is not None:
        spec = load_spec(args.spec)
    else:
        spec = load_saved_spec(args.dir)
    spec = spec.with_executor(kind=args.executor, workers=args.workers, address=args.address,
                              gpus_per_cnn=args.gpus_per_cnn)
    folder = args.dir or DEFAULT_ROOT / spec.name
    summary = run_exploration(spec, folder, progress=not args.no_progress and sys.stderr.isatty(),
                              max_candidates=args.max_candidates)
    d = summary.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(f"{spec.name}: {d['evaluated']} evaluated ({d['ok']} ok, {d['failed']} failed), "
              f"{d['skipped']} already done, {d['cnn_runs']} CNN runs "
              f"({d['cnn_reused']} reused) in {d['seconds']:.0f} s "
              f"[{d['candidates_per_hour']:.0f} candidates/h, {d['executor']}]")
        print(f"results: {Path(folder) / 'results.sqlite'}  (axcnn explore status {folder})")
    for err in summary.source_errors:
        log.error("source %s: %s", err["source"], err["error"])
    return 1 if summary.source_errors else 0


def _fmt(v, spec=".4g") -> str:
    return "-" if v is None else format(v, spec)


def cmd_status(args) -> int:
    from ..explore.runner import exploration_status

    st = exploration_status(args.dir)
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0
    running = st["running_pid"]
    print(f"{st['name']} in {st['folder']}: "
          + (f"RUNNING (coordinator pid {running})" if running else "not running"))
    t = st["totals"]
    print(f"rows: {t.get('ok', 0)} ok, {t.get('failed', 0)} failed, {t.get('partial', 0)} "
          f"waiting for the CNN" + (f"; {st['other_settings_rows']} rows of other settings"
                                    if st["other_settings_rows"] else ""))
    if st["baseline_accuracy"] is not None:
        print(f"quantized baseline accuracy: {st['baseline_accuracy']:.2f}%")
    for src, per in sorted(st["counts"].items()):
        print(f"  {src:20s} " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())))
    for run in st["subxpat_runs"]:
        print(f"  SubXPAT {run['run']}: {run['status']}, {run['circuits']} circuits "
              f"({run['args']})")
    if st["best"]:
        print("best accuracy:")
        for b in st["best"]:
            print(f"  {b['name']:28s} {_fmt(b['accuracy'], '.2f')}%  area {_fmt(b['area_um2'], '.1f')}"
                  f"  power {_fmt(b['power_w'])} W  mae {_fmt(b['mae'])}")
    if st["failures"]:
        print("recent failures:")
        for f in st["failures"]:
            print(f"  {f['name']} ({f['stage']}, {f['attempts']} tries): {(f['error'] or '')[:150]}")
    last = st["last_run"]
    if last:
        print(f"last run: {last.get('evaluated', 0)} evaluated in {last.get('seconds', 0):.0f} s "
              f"({last.get('candidates_per_hour', 0):.0f} candidates/h, {last.get('executor')})")
    return 0


def cmd_export(args) -> int:
    from ..explore.export import export_csv, export_json, export_parquet

    if not (args.csv or args.parquet or args.json):
        raise ConfigError("choose at least one of --csv FILE, --parquet FILE, --json FILE|-")
    kw = {"status": None, "all_settings": True} if args.all else {}
    if args.csv:
        log.info("wrote %s", export_csv(args.dir, args.csv, **kw))
    if args.parquet:
        log.info("wrote %s", export_parquet(args.dir, args.parquet, **kw))
    if args.json:
        text = export_json(args.dir, None if args.json == "-" else args.json, **kw)
        if args.json == "-":
            sys.stdout.write(text)
        else:
            log.info("wrote %s", args.json)
    return 0


def cmd_pareto(args) -> int:
    from ..explore.export import load_rows
    from ..explore.pareto import COSTS, DEFAULT_COSTS, pareto_fronts, plot_fronts

    costs = args.cost or list(DEFAULT_COSTS)
    for c in costs:
        if c not in COSTS:
            raise ConfigError(f"unknown cost '{c}'; expected one of {', '.join(COSTS)}")
    rows, meta = load_rows(args.dir)
    if not rows:
        raise ConfigError(f"'{args.dir}' has no finished candidates yet (axcnn explore status "
                          f"{args.dir})")
    fronts = pareto_fronts(rows, costs)
    paths = plot_fronts(rows, args.out or Path(args.dir) / "pareto", costs,
                        title=meta.get("name") or "", baseline=meta.get("baseline_accuracy"))
    if args.json:
        print(json.dumps({c: [{k: p.get(k) for k in ("name", "source", "accuracy", COSTS[c][0],
                                                      "mae", "w_mae", "key")} for p in f]
                          for c, f in fronts.items()}, indent=2))
        return 0
    for c in costs:
        col, label = COSTS[c]
        print(f"Pareto front: accuracy vs {label} ({len(fronts[c])} of {len(rows)} candidates)")
        print(f"  {'candidate':30s} {'accuracy':>9s} {col:>12s} {'mae':>10s} {'w_mae':>10s}")
        for p in fronts[c]:
            print(f"  {p['name'][:30]:30s} {p['accuracy']:8.2f}% {p[col]:12.4g} "
                  f"{_fmt(p.get('mae')):>10s} {_fmt(p.get('w_mae')):>10s}")
    print("figures: " + ", ".join(str(p) for k, p in paths.items() if k != "json"))
    return 0
