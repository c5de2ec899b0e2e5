"""``axcnn circuit``: multiplier circuits -> LUTs, area, delay and power.

Subcommands::

    axcnn circuit generate FAMILY... [--bits 8] [--signed] [-o FILE.v | --out-dir DIR] [--grid]
    axcnn circuit simulate FILE.v|DIR --out LUT.npz|DIR [--signed] [--ports ...] [--cross-check N]
    axcnn circuit report   FILE.v|DIR [--liberty L] [--operands uniform|HIST.npz] [--json]
    axcnn circuit setup    [--force]            # install the default liberty (osu018)
    axcnn circuit tools    [--json]             # which EDA tools and liberty are available

Each step runs in its own work directory (default ``runs/circuits/<name>-<hash>``) that keeps
the scripts, logs and ``commands.sh`` needed to reproduce it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

from . import accept_verbosity
from ..errors import AxcnnError, ConfigError, exit_code

log = logging.getLogger("axcnn.circuit")

DEFAULT_WORK_ROOT = Path("runs") / "circuits"


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------

def _add_port_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("operands and ports")
    s = g.add_mutually_exclusive_group()
    s.add_argument("--signed", dest="signed", action="store_true", default=None,
                   help="two's complement operands (default: signed if the ports are declared "
                        "'signed' or the module has an EvoApproxLib mul8s_ name)")
    s.add_argument("--unsigned", dest="signed", action="store_false",
                   help="unsigned operands")
    g.add_argument("--ports", default="auto",
                   choices=("auto", "subxpat", "evoapprox", "plain", "positional", "explicit"),
                   help="port convention (default: auto-detect; see docs/circuits.md)")
    g.add_argument("--port-a", metavar="BITS", help="explicit operand A (activation) bits, LSB "
                   "first, e.g. 'in0..in7' or 'x[7:0]'")
    g.add_argument("--port-b", metavar="BITS", help="explicit operand B (weight) bits, LSB first")
    g.add_argument("--port-y", metavar="BITS", help="explicit product bits, LSB first")
    g.add_argument("--bits", type=int, help="operand A width (needed only to split SubXPAT "
                   "in* ports unevenly; checked otherwise)")
    g.add_argument("--w-bits", type=int, help="operand B width (default: the rest)")
    g.add_argument("--top", help="top module (default: yosys' auto-top)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path,
                   help=f"work directory (default: {DEFAULT_WORK_ROOT}/<name>-<hash>; for a "
                        "folder one sub-directory per circuit)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds each tool run may take (default: $AXCNN_TOOL_TIMEOUT or 600)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "circuit", help="multiplier circuits: generate Verilog, simulate to a LUT, area/delay/power",
        description="Multiplier circuits: Verilog generators, netlist -> LUT, synthesis, timing "
                    "and workload-aware power (needs yosys; report also needs OpenSTA).")
    sub = parser.add_subparsers(dest="circuit_command", metavar="SUBCOMMAND")
    sub.required = True
    accept_verbosity(sub)

    g = sub.add_parser("generate", help="write Verilog for built-in multiplier families",
                       description="Write Verilog for built-in multipliers (exact, truncK, "
                                   "bamH_V, drumK, mitchell; see 'axcnn lut list').")
    g.add_argument("names", nargs="*", metavar="FAMILY",
                   help="built-in names, e.g. exact trunc6 bam2_6 drum4 mitchell (optionally "
                        "with @8u/@4s/@8x4u)")
    g.add_argument("--grid", action="store_true", help="every name of the default family grid")
    g.add_argument("--bits", type=int, default=None, help="operand bits (default 8)")
    g.add_argument("--w-bits", type=int, default=None, help="weight bits (default: --bits)")
    g.add_argument("--signed", action="store_true", default=None, help="two's complement operands")
    g.add_argument("-o", "--out", type=Path, help="output .v file (one name only)")
    g.add_argument("--out-dir", type=Path, help="output folder (<name>.v per circuit)")
    g.add_argument("--module", help="module name (one name only; default mul_<name>)")
    g.add_argument("--verify", action="store_true",
                   help="simulate each circuit with yosys and compare with its functional table")
    g.add_argument("--workdir", type=Path, help="work directory for --verify")
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("simulate", help="Verilog multiplier(s) -> LUT file(s)",
                       description="Elaborate a Verilog multiplier with yosys and evaluate all "
                                   "operand pairs into a LUT (.npz/.npy/.bin).")
    s.add_argument("path", type=Path, help="a .v file or a folder of .v files")
    s.add_argument("--out", type=Path, required=True,
                   help="LUT file (.npz ours, .npy seed, .bin) or, for a folder, an output folder")
    s.add_argument("--name", help="LUT name (default: file stem)")
    s.add_argument("--cross-check", type=int, metavar="N", default=0,
                   help="also simulate N operand pairs (0: none, -1: all) with iverilog and compare")
    s.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    _add_port_options(s)
    _add_run_options(s)
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("report", help="area, delay and power of Verilog multiplier(s)",
                       description="Simulate, synthesize (yosys+ABC), time (OpenSTA) and power "
                                   "one multiplier or a folder of them.")
    r.add_argument("path", type=Path, help="a .v file or a folder of .v files")
    r.add_argument("--liberty", help="liberty file (default: osu018 from 'axcnn circuit setup')")
    r.add_argument("--operands", default="uniform",
                   help="operand stream: 'uniform' or an operand histogram (.npz/.npy, shape "
                        "(2^a, 2^w) or (C, 2^a, 2^w); .npz arrays are summed)")
    r.add_argument("--vectors", type=int, default=65536, help="operand pairs in the stream")
    r.add_argument("--seed", type=int, default=0, help="seed of the operand stream")
    r.add_argument("--clock-ns", type=float, default=10.0,
                   help="clock period in ns: one multiplication per cycle (default 10)")
    r.add_argument("--delay-model", choices=("zero", "unit"), default="zero",
                   help="toggle counting: zero-delay (no glitches) or unit-delay (with glitches)")
    r.add_argument("--output-load-pf", type=float, default=0.0,
                   help="load on each product bit in pF (default 0, as OpenSTA without set_load)")
    r.add_argument("--no-vectorless", action="store_true",
                   help="leave out OpenSTA's vectorless power figure")
    r.add_argument("--jobs", type=int, default=1, help="circuits reported in parallel (folders)")
    r.add_argument("--json", action="store_true", help="JSON on stdout (a list for a folder)")
    _add_port_options(r)
    _add_run_options(r)
    r.set_defaults(func=cmd_report)

    st = sub.add_parser("setup", help="install the default liberty (osu018) into the cache",
                        description="Download Debian's qflow-tech-osu018 with 'apt-get download' "
                                    "and unpack its liberty with 'dpkg-deb -x' into "
                                    "$AXCNN_CACHE/liberty (default ~/.cache/axcnn/liberty).")
    st.add_argument("--cache", type=Path,
                    help="cache root, like $AXCNN_CACHE (the liberty goes to CACHE/liberty/osu018; "
                         "later runs then need AXCNN_CACHE=CACHE)")
    st.add_argument("--force", action="store_true", help="download again")
    st.add_argument("--timeout", type=float, default=None, help="seconds for apt-get/dpkg-deb")
    st.set_defaults(func=cmd_setup)

    t = sub.add_parser("tools", help="which EDA tools and liberty are available",
                       description="Show yosys, OpenSTA, iverilog and the default liberty.")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tools)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _explicit(args) -> dict | None:
    given = {k: getattr(args, f"port_{k}") for k in ("a", "b", "y")}
    if any(given.values()) or args.ports == "explicit":
        return {k: v for k, v in given.items() if v}
    return None


def _verilog_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".v", ".sv") and p.is_file())
        if not files:
            raise ConfigError(f"folder '{path}' holds no .v files")
        return files
    if not path.is_file():
        raise ConfigError(f"'{path}' does not exist; pass a Verilog file or a folder of them")
    return [path]


def _default_workdir(file: Path) -> Path:
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:8]
    return DEFAULT_WORK_ROOT / f"{file.stem}-{digest}"


def _workdir_for(args, file: Path, many: bool) -> Path:
    if args.workdir is None:
        return _default_workdir(file)
    return args.workdir / file.stem if many else args.workdir


def _common_kwargs(args) -> dict:
    return dict(signed=args.signed, convention=args.ports, explicit=_explicit(args),
                a_bits=args.bits, w_bits=args.w_bits, top=args.top, timeout=args.timeout)


# --------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------

def cmd_generate(args) -> int:
    from ..lut import builtin, family_grid, parse_builtin
    from ..hw.verilog import generate_verilog, write_verilog

    names = list(args.names)
    if args.grid:
        names += family_grid(args.bits or 8)
    if not names:
        raise ConfigError("name at least one built-in multiplier (e.g. exact trunc6 drum4) or "
                          "pass --grid")
    specs = []
    for n in names:
        specs.append(parse_builtin(n, args.bits, args.signed, args.w_bits))
    if len(specs) > 1 and (args.out or args.module):
        raise ConfigError("--out and --module take one circuit; use --out-dir for several")
    written = []
    for spec in specs:
        if args.out:
            path = write_verilog(spec, args.out, module=args.module)
        elif args.out_dir:
            path = write_verilog(spec, args.out_dir / f"{spec.name}.v", module=args.module)
        else:
            if len(specs) > 1:
                raise ConfigError("several circuits need --out-dir (or one --out per call)")
            sys.stdout.write(generate_verilog(spec, module=args.module))
            path = None
        written.append((spec, path))
        if path is not None:
            log.info("wrote %s (%s)", path, spec.spec)
    if args.verify:
        from ..hw.simulate import verilog_to_lut
        import numpy as np
        bad = 0
        for spec, path in written:
            if path is None:
                raise ConfigError("--verify needs --out or --out-dir")
            wd = (args.workdir or DEFAULT_WORK_ROOT / "generate") / spec.name
            res = verilog_to_lut(path, workdir=wd, signed=spec.signed)
            ref = builtin(spec.spec)
            ok = np.array_equal(res.lut.table, ref.table)
            bad += not ok
            print(f"{spec.name}: {'matches' if ok else 'DIFFERS FROM'} its functional table "
                  f"({len(res.netlist.gates)} gates)")
        if bad:
            log.error("%d generated circuit(s) differ from their functional tables", bad)
            return 1
    return 0


# --------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------

def _simulate_one(args, file: Path, out: Path, many: bool) -> dict:
    from ..lut import lut_metrics, save_lut
    from ..hw.simulate import iverilog_check, verilog_to_lut

    wd = _workdir_for(args, file, many)
    res = verilog_to_lut(file, workdir=wd / "simulate", name=None if many else args.name,
                         **_common_kwargs(args))
    path = save_lut(res.lut, out)
    info = {"file": str(file), "lut": str(path), "name": res.lut.name,
            "a_bits": res.portmap.a_bits, "w_bits": res.portmap.w_bits, "signed": res.signed,
            "ports": res.portmap.convention, "exact": res.lut.is_exact(),
            "sha256": res.lut.sha256, "metrics": lut_metrics(res.lut),
            "gates": len(res.netlist.gates), "seconds": res.seconds,
            "warnings": res.netlist.warnings, "workdir": str(wd)}
    if args.cross_check:
        samples = None if args.cross_check < 0 else args.cross_check
        chk = iverilog_check(file, res.lut, res.portmap, res.netlist.module, res.netlist.ports,
                             workdir=wd / "iverilog", samples=samples, timeout=args.timeout)
        info["iverilog"] = chk
        if chk["mismatches"]:
            raise AxcnnError(f"{file}: iverilog disagrees with the LUT on {chk['mismatches']} of "
                             f"{chk['checked']} pairs, e.g. (a, w, lut, iverilog) = "
                             f"{chk['examples'][:3]}; see {chk['workdir']}")
    return info


def cmd_simulate(args) -> int:
    files = _verilog_files(args.path)
    many = args.path.is_dir()
    if many and args.out.suffix in (".npz", ".npy", ".bin"):
        raise ConfigError(f"'{args.path}' is a folder: --out must be a folder, not {args.out}")
    if not many and args.out.suffix.lower() not in (".npz", ".npy", ".bin"):
        raise ConfigError(f"--out {args.out}: expected a .npz (axcnn), .npy (seed) or .bin LUT file")
    results, worst = [], 0
    for f in files:
        out = args.out / f"{f.stem}.npz" if many else args.out
        try:
            info = _simulate_one(args, f, out, many)
        except AxcnnError as exc:
            if not many:
                raise
            worst = max(worst, exit_code(exc))
            log.error("%s: %s", f, exc)
            info = {"file": str(f), "error": str(exc), "exit_code": exit_code(exc)}
        results.append(info)
        if not args.json and "error" not in info:
            m = info["metrics"]
            print(f"{f.name}: {info['a_bits']}x{info['w_bits']} "
                  f"{'signed' if info['signed'] else 'unsigned'} ({info['ports']} ports, "
                  f"{info['gates']} gates) -> {info['lut']}  "
                  + ("exact" if info["exact"] else f"MAE {m['mae']:.4g} WCE {m['wce']:.4g}")
                  + (f"  iverilog: {info['iverilog']['checked']} pairs agree" if "iverilog" in info else ""))
    if args.json:
        print(json.dumps(results if many else results[0], indent=2, default=str))
    return worst


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------

def _report_one(kw: dict) -> dict:
    """Worker (also in a process pool): one report, errors turned into an 'error' entry."""
    from ..hw.report import circuit_report

    file = kw.pop("verilog")
    many = kw.pop("_many")
    try:
        return circuit_report(file, **kw)
    except AxcnnError as exc:
        if not many:
            raise
        return {"file": str(file), "error": str(exc), "exit_code": exit_code(exc)}


def cmd_report(args) -> int:
    from ..hw.liberty import resolve_liberty
    from ..hw.report import format_report, format_table

    files = _verilog_files(args.path)
    many = args.path.is_dir()
    if args.vectors < 2:
        raise ConfigError("--vectors must be at least 2")
    if args.clock_ns <= 0:
        raise ConfigError("--clock-ns must be positive")
    if args.operands != "uniform" and not Path(args.operands).is_file():
        raise ConfigError(f"--operands '{args.operands}' is neither 'uniform' nor an existing "
                          "histogram file (.npz/.npy)")
    from ..toolchain import find_tool
    for tool in ("yosys", "sta"):                  # fail early (exit 3) with the install command
        find_tool(tool)
    liberty = str(resolve_liberty(args.liberty))   # exit 3 with the setup command if missing
    base = dict(liberty=liberty, operands=args.operands, clock_ns=args.clock_ns,
                vectors=args.vectors, seed=args.seed, delay_model=args.delay_model,
                output_load_pf=args.output_load_pf, vectorless=not args.no_vectorless,
                **_common_kwargs(args))
    jobs = [dict(base, verilog=f, workdir=_workdir_for(args, f, many), _many=many) for f in files]
    if args.jobs > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            reports = list(pool.map(_report_one, jobs))
    else:
        reports = [_report_one(j) for j in jobs]
    worst = max((r.get("exit_code", 1) for r in reports if "error" in r), default=0)
    for r in reports:
        if "error" in r:
            log.error("%s: %s", r["file"], r["error"])
    if args.json:
        print(json.dumps(reports if many else reports[0], indent=2))
    elif many:
        print(format_table(reports))
    else:
        print(format_report(reports[0]))
    return worst


# --------------------------------------------------------------------------------------
# setup / tools
# --------------------------------------------------------------------------------------

def cmd_setup(args) -> int:
    from ..hw.liberty import install_default_liberty

    path = install_default_liberty(args.cache / "liberty" if args.cache else None,
                                   timeout=args.timeout, force=args.force)
    print(path)
    return 0


def cmd_tools(args) -> int:
    from ..toolchain import check_tools
    from ..hw.liberty import default_liberty
    from ..errors import ToolNotFound

    rows = check_tools(["yosys", "sta", "iverilog", "vvp"])
    try:
        lib = {"liberty": str(default_liberty()), "found": True}
    except ToolNotFound as exc:
        lib = {"liberty": None, "found": False, "problem": str(exc)}
    if args.json:
        print(json.dumps({"tools": rows, "default_liberty": lib}, indent=2))
    else:
        for r in rows:
            if r["found"]:
                print(f"{r['tool']:9s} {r['version']:10s} {r['path']}")
            else:
                print(f"{r['tool']:9s} MISSING    install: {r['install']} (or set {r['env']})")
        print(f"{'liberty':9s} {'ok' if lib['found'] else 'MISSING':10s} "
              f"{lib['liberty'] or lib['problem']}")
    missing = [r["tool"] for r in rows if not r["found"]]
    return 3 if missing or not lib["found"] else 0
