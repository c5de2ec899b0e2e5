"""SubXPAT as a candidate source: run a user's checkout, harvest every accepted circuit.

SubXPAT (LP-RG/subxpat) is an SMT-based approximate logic synthesis tool; one run walks an
error schedule and accepts a sequence of ever more approximate circuits. This adapter:

* runs the checkout given by the source's ``dir:`` or ``$SUBXPAT_DIR`` with **its own Python
  environment** (``python:``, ``$AXCNN_SUBXPAT_PYTHON`` or ``<dir>/.venv/bin/python``), whose
  ``bin`` folder goes first on ``PATH`` (SubXPAT and z3log start ``python3`` for their solver
  scripts; without it labeling silently finds nothing);
* gives every run a **private working directory** (SubXPAT writes ``input/``, ``output/``,
  ``test/`` and solver scripts relative to it, with names that clash between runs): a copy
  of ``main.py``, ``sxpat/``, ``config/`` and the benchmarks of ``input/ver.bak`` under
  ``sources/subxpat/<benchmark>-<run hash>/work``;
* enforces a **wall-clock budget** per run (SubXPAT only has a per-solver-call ``--timeout``):
  the whole process group is killed when it expires and what was accepted so far is kept;
* **harvests every accepted circuit from ``input/ver``** (``<bench>_<unix time>_<model>.v``
  on branch 114, lineage names on ``main``), never from ``output/ver``, which misses the
  last circuit and holds the exact one; a circuit is taken once its row is in
  ``output/report/area_power_delay.csv`` (written after the file), or once the run is over.
  Harvested files are copied to ``circuits/`` and streamed to the evaluation while SubXPAT
  is still running. Timestamped names do not matter: candidates are keyed by content.
* records each run in ``state.json``: a finished run (or one that used its budget) is not
  run again when the sweep resumes; an interrupted one is started again from scratch (its
  processes, found by their working directory, are ended first), and the circuits it
  produces again are recognised by their content.

``grid:`` expands SubXPAT options into several runs, e.g. ``{max_error: [2, 4], imax: [3, 4]}``
gives four runs with ``--max-error``/``--imax`` set.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError, ToolNotFound
from .candidates import Candidate, Source, SourceContext, verilog_hash

log = logging.getLogger("axcnn.explore")

DEFAULT_BUDGET_S = 3600.0
ENV_DIR = "SUBXPAT_DIR"
_BENCH_BITS = re.compile(r"_i(?P<i>\d+)_o(?P<o>\d+)$")


def option_flag(key: str) -> str:
    return key if key.startswith("-") else "--" + key.replace("_", "-")


def expand_runs(args: list, grid: dict | None) -> list[list[str]]:
    """The argument lists of every run: ``args`` plus one combination of the grid."""
    base = [str(a) for a in (args or [])]
    if not grid:
        return [base]
    keys = list(grid)
    values = [v if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
    runs = []
    for combo in itertools.product(*values):
        extra: list[str] = []
        for k, v in zip(keys, combo):
            if v is True:
                extra.append(option_flag(k))
            elif v is False or v is None:
                continue
            else:
                extra += [option_flag(k), str(v)]
        runs.append(base + extra)
    return runs


def benchmark_bits(name: str) -> int | None:
    """Operand bits of a SubXPAT multiplier benchmark: ``mul_i16_o16`` -> 8."""
    m = _BENCH_BITS.search(name)
    return int(m["i"]) // 2 if m else None


def _code_hash(checkout: Path) -> str:
    h = hashlib.sha256()
    files = [checkout / "main.py", *sorted((checkout / "sxpat").rglob("*.py"))]
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(checkout)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def processes_in(workdir: Path) -> list[int]:
    """Ids of the processes whose working directory is inside ``workdir`` (Linux /proc)."""
    out = []
    root = str(workdir.resolve())
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    me = os.getpid()
    for p in proc.iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            cwd = os.readlink(p / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            out.append(int(p.name))
    return out


def end_processes(workdir: Path) -> int:
    """End the SubXPAT processes this adapter started in ``workdir`` (by id, process groups)."""
    pids = processes_in(workdir)
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            continue
    for g in groups:
        if g == os.getpgid(0):
            continue
        try:
            os.killpg(g, signal.SIGKILL)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


def _read_report(work: Path) -> dict[str, dict]:
    """``output/report/area_power_delay.csv`` rows by file name (no header in SubXPAT)."""
    path = work / "output" / "report" / "area_power_delay.csv"
    rows: dict[str, dict] = {}
    if not path.is_file():
        return rows
    try:
        with open(path, newline="") as f:
            for r in csv.reader(f):
                if len(r) < 6 or not r[0].endswith(".v"):
                    continue
                info = {"subxpat_id": r[1]}
                for k, i in (("subxpat_area", 2), ("subxpat_power", 3), ("subxpat_delay", 4),
                             ("et", 5)):
                    try:
                        info[k] = float(r[i])
                    except (ValueError, IndexError):
                        pass
                rows[r[0]] = info
    except OSError:
        pass
    return rows


class SubXPATSource(Source):
    """Runs of a SubXPAT checkout; see the module docstring."""

    type = "subxpat"

    # ------------------------------------------------------------------ configuration
    @property
    def checkout(self) -> Path:
        raw = self.options.get("dir") or os.environ.get(ENV_DIR, "")
        if not raw:
            raise ToolNotFound(
                "SubXPAT checkout not given: set the source's 'dir:' or $SUBXPAT_DIR to a clone "
                "of LP-RG/subxpat (branch 114-new-zone-constraint-with-re-metric @a0a2b89, or "
                "main) with its environment set up ('make setup')")
        return self.explore.path(raw)

    @property
    def python(self) -> Path:
        raw = self.options.get("python")
        if raw:
            return self.explore.path(raw)
        return self.checkout / ".venv" / "bin" / "python"

    @property
    def benchmark(self) -> str:
        b = str(self.options["benchmark"])
        return Path(b).stem if b.endswith((".v", ".sv")) else b

    def check(self) -> None:
        from ..toolchain import find_tool
        from .tools import register_subxpat_python

        co = self.checkout
        if not (co / "main.py").is_file() or not (co / "sxpat").is_dir():
            raise ToolNotFound(f"'{co}' is not a SubXPAT checkout (no main.py and sxpat/); set "
                               f"the source's 'dir:' or ${ENV_DIR} to a clone of LP-RG/subxpat")
        find_tool(register_subxpat_python(self.python, co))
        b = str(self.options["benchmark"])
        if b.endswith((".v", ".sv")):
            if not self.explore.path(b).is_file():
                raise ConfigError(f"SubXPAT benchmark file '{self.explore.path(b)}' does not exist")
        elif not any((co / "input" / d / f"{b}.v").is_file() for d in ("ver.bak", "ver")):
            raise ConfigError(f"SubXPAT benchmark '{b}' is not in {co}/input/ver.bak; use a name "
                              "such as mul_i16_o16 (8x8) or mul_i8_o8 (4x4), or a Verilog file")
        bits = benchmark_bits(self.benchmark)
        if bits is not None and bits != self.explore.bits:
            log.warning("SubXPAT benchmark %s is a %dx%d multiplier but the spec's bits are %d: "
                        "its circuits cannot run in the CNN", self.benchmark, bits, bits,
                        self.explore.bits)

    def runs(self) -> list[list[str]]:
        runs = expand_runs(self.options.get("args") or [], self.options.get("grid"))
        timeout = self.options.get("solver_timeout_s")
        if timeout is not None:
            runs = [r if "--timeout" in r else r + ["--timeout", str(int(timeout))] for r in runs]
        return runs

    # ------------------------------------------------------------------ one run
    def _prepare(self, work: Path) -> None:
        co = self.checkout
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv")
        for name in ("sxpat", "config"):
            if (co / name).is_dir():
                shutil.copytree(co / name, work / name, ignore=ignore)
        for f in co.glob("*.py"):
            shutil.copy2(f, work / f.name)
        (work / "input" / "ver").mkdir(parents=True)
        for f in (co / "input").glob("*"):
            if f.is_file():
                shutil.copy2(f, work / "input" / f.name)
        src = co / "input" / "ver.bak"
        if not src.is_dir():
            src = co / "input" / "ver"
        for f in src.glob("*.v"):
            shutil.copy2(f, work / "input" / "ver" / f.name)
        b = str(self.options["benchmark"])
        if b.endswith((".v", ".sv")):
            shutil.copy2(self.explore.path(b), work / "input" / "ver" / f"{self.benchmark}.v")

    def _harvest(self, work: Path, out: Path, initial: set[str], finished: bool,
                 taken: dict[str, dict]) -> list[str]:
        """Copy newly accepted circuits from ``work/input/ver`` to ``out``; their names."""
        ver = work / "input" / "ver"
        if not ver.is_dir():
            return []
        report = _read_report(work)
        new = []
        for f in sorted(ver.glob("*.v"), key=lambda p: (p.stat().st_mtime, p.name)):
            name = f.name
            if name in initial or name in taken or name.endswith("_for_metrics.v"):
                continue
            if not name.startswith(self.benchmark + "_"):
                continue
            ready = finished or name in report
            if not ready:
                continue
            text = f.read_text(errors="replace")
            if "endmodule" not in text:
                continue
            shutil.copy2(f, out / name)
            taken[name] = report.get(name, {})
            new.append(name)
        return new

    def _candidate(self, path: Path, run_id: str, args: list[str], info: dict) -> Candidate:
        return Candidate(path.stem, self.label, "circuit", verilog_hash(path), verilog=str(path),
                         ports="subxpat", signed=False,
                         info={"tool": "subxpat", "run": run_id, "benchmark": self.benchmark,
                               "args": args, **info})

    def _run(self, ctx: SourceContext, args: list[str]) -> Iterator[Candidate]:
        from ..toolchain import ToolFailed, ToolTimeout, run_tool
        from .tools import register_subxpat_python

        run_id = hashlib.sha256(json.dumps(
            {"bench": self.benchmark, "args": args, "code": self._code}, sort_keys=True
        ).encode()).hexdigest()[:12]
        rdir = ctx.work_dir("subxpat", f"{self.benchmark}-{run_id}")
        state_path = rdir / "state.json"
        out = rdir / "circuits"
        out.mkdir(exist_ok=True)
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        attempts = int(state.get("attempts", 0))
        if state.get("status") in ("done", "budget") or (
                state.get("status") == "failed" and attempts >= self.explore.max_attempts):
            log.info("SubXPAT run %s (%s): %s before, %d circuits; not run again", run_id,
                     " ".join(args), state["status"], len(state.get("circuits", {})))
            for name, info in state.get("circuits", {}).items():
                if (out / name).is_file():
                    yield self._candidate(out / name, run_id, args, info)
            return
        work = rdir / "work"
        if work.exists():
            n = end_processes(work)
            if n:
                log.warning("SubXPAT run %s: ended %d leftover process(es) of an interrupted run",
                            run_id, n)
        self._prepare(work)
        initial = {p.name for p in (work / "input" / "ver").glob("*.v")}
        budget = float(self.options.get("wall_budget_s", DEFAULT_BUDGET_S))
        tool = register_subxpat_python(self.python, self.checkout)
        venv_bin = str(Path(self.python).parent)
        env = {"PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
               "VIRTUAL_ENV": str(Path(venv_bin).parent), "PYTHONUNBUFFERED": "1"}
        state = {"status": "running", "args": args, "benchmark": self.benchmark,
                 "checkout": str(self.checkout), "started": time.time(), "circuits": {},
                 "attempts": attempts + 1}
        state_path.write_text(json.dumps(state, indent=2))
        outcome: dict = {}

        def target():
            try:
                res = run_tool(tool, ["main.py", self.benchmark, *args], cwd=work, timeout=budget,
                               env=env, log_name="subxpat")
                outcome["status"] = "done"
                outcome["seconds"] = res.seconds
            except ToolTimeout:
                outcome["status"] = "budget"
            except ToolFailed as exc:
                outcome["status"] = "failed"
                outcome["error"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - reported below, never lost in the thread
                outcome["status"] = "failed"
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        log.info("SubXPAT run %s: %s %s (budget %.0f s) in %s", run_id, self.benchmark,
                 " ".join(args), budget, work)
        t0 = time.time()
        thread = threading.Thread(target=target, name=f"subxpat-{run_id}", daemon=True)
        thread.start()
        taken: dict[str, dict] = {}
        poll = float(self.options.get("poll_s", 1.0))
        try:
            while True:
                alive = thread.is_alive()
                for name in self._harvest(work, out, initial, not alive, taken):
                    state["circuits"][name] = taken[name]
                    state_path.write_text(json.dumps(state, indent=2))
                    yield self._candidate(out / name, run_id, args, taken[name])
                if not alive:
                    break
                if ctx.stop.is_set():
                    end_processes(work)
                    thread.join(10)
                    return
                thread.join(poll)
        finally:
            if thread.is_alive():     # the consumer stopped early (generator closed)
                end_processes(work)
        state.update(status=outcome.get("status", "failed"), seconds=round(time.time() - t0, 1),
                     finished=time.time())
        if "error" in outcome:
            state["error"] = outcome["error"]
            log.error("SubXPAT run %s failed after %d circuit(s): %s", run_id,
                      len(state["circuits"]), outcome["error"])
        elif outcome.get("status") == "budget":
            log.warning("SubXPAT run %s used its %.0f s budget; kept %d circuit(s)", run_id,
                        budget, len(state["circuits"]))
        else:
            log.info("SubXPAT run %s finished in %.0f s with %d circuit(s)", run_id,
                     state["seconds"], len(state["circuits"]))
        state_path.write_text(json.dumps(state, indent=2))

    def candidates(self, ctx: SourceContext) -> Iterator[Candidate]:
        self._code = _code_hash(self.checkout)
        for args in self.runs():
            if ctx.stop.is_set():
                return
            yield from self._run(ctx, args)
