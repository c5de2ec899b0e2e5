"""The coordinator of an exploration: sources -> executor -> results store.

One exploration lives in one folder (``axcnn explore run SPEC --dir DIR``)::

    DIR/
      spec.json            the resolved spec of the last run (``explore run --dir DIR`` reuses it)
      results.sqlite       the results store (:mod:`~axcnn.explore.store`), written only here
      luts/<sha256>.npz    every candidate's LUT, content-addressed
      operands-<sha8>.npy  the operand histogram used for weighted error and workload power
      runs/<cnn hash>/     CNN runs: a copy of the quantized checkpoint + one approximate run per LUT
      work/<key16>/        per-candidate EDA work (tool scripts, logs, commands.sh, report.json)
      sources/             source state: generated Verilog, SubXPAT runs (state.json, circuits/)
      logs/explore.log     the coordinator's log; logs/last_run.json the last run's summary
      .lock                held while a coordinator writes the folder

:func:`run_exploration` takes candidates from the sources (a background thread, so SubXPAT's
circuits are evaluated while it is still running), skips every candidate whose row is
finished, submits EDA tasks and then CNN tasks (one per distinct LUT), and writes each row
as its results arrive. Killing it at any point loses at most the tasks in flight: a rerun
skips finished rows, goes straight to the CNN for ``partial`` ones, and the training
pipeline resumes interrupted CNN runs from their last epoch. Failed candidates are retried
until they have failed ``max_attempts`` times.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .candidates import Candidate, SourceContext, make_sources
from .evaluate import CnnJob, EdaJob, cnn_task, eda_task, write_lut
from .executors import Executor, make_executor
from .spec import ExploreSpec, digest, settings_digest, spec_from_dict
from .store import ResultsStore, store_path

log = logging.getLogger("axcnn.explore")

SPEC_FILE = "spec.json"


def row_key(candidate_key: str, settings_hash: str) -> str:
    return hashlib.sha256(f"{candidate_key}|{settings_hash}".encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# the folder lock (one coordinator per exploration)
# --------------------------------------------------------------------------------------

class FolderLock:
    """An exclusive ``flock`` on ``DIR/.lock`` holding the coordinator's pid."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"another 'axcnn explore run' (pid {holder(self.path.parent)}) "
                                  f"is writing '{self.path.parent}'; wait for it, stop it, or "
                                  "use 'axcnn explore status' to watch it") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def holder(folder: Path) -> int | None:
    """The pid of the coordinator writing ``folder`` now, or None."""
    import fcntl

    path = Path(folder) / ".lock"
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except OSError:
        try:
            return int(path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return -1
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# preparation: checkpoint, histogram, settings
# --------------------------------------------------------------------------------------

@dataclass
class Prepared:
    spec: ExploreSpec
    folder: Path
    settings_hash: str
    eda_identity: dict
    cnn_identity: dict | None
    cnn_hash: str | None
    runs_root: Path | None
    liberty: str | None
    operands: str | None
    baseline_accuracy: float | None
    info: dict = field(default_factory=dict)


def _quantized_config(spec: ExploreSpec):
    from ..config import Stage, resolve_config

    s = spec.cnn
    return resolve_config(spec.model_name, spec.dataset_name, Stage.QUANTIZED, bits=spec.bits,
                          signed=spec.signed, per_channel=s.per_channel if s else False,
                          seed=s.seed if s else 42, include_linear=s.include_linear if s else False)


def _copy_quantized(spec: ExploreSpec, runs_root: Path) -> tuple[str, float | None]:
    """Copy the quantized checkpoint into ``runs_root``; returns (its sha256, its accuracy)."""
    from ..train.pipeline import remake_command, run_name

    qcfg = _quantized_config(spec)
    rel = run_name(qcfg)
    src_dir = spec.path(spec.runs_dir) / rel
    src = src_dir / "best.pt"
    if not src.is_file():
        raise ConfigError(
            f"the exploration needs the quantized checkpoint '{src}', which does not exist; "
            f"create it with: {remake_command(qcfg, qcfg.stage)} --runs-dir {spec.runs_dir} "
            "(after the exact stage), or set 'runs_dir' in the spec, or 'cnn: false'")
    sha = file_sha256(src)
    dst_dir = runs_root / rel
    dst = dst_dir / "best.pt"
    if not dst.is_file() or file_sha256(dst) != sha:
        dst_dir.mkdir(parents=True, exist_ok=True)
        tmp = dst_dir / ".best.pt.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        for extra in ("config.json", "result.json"):
            if (src_dir / extra).is_file():
                shutil.copyfile(src_dir / extra, dst_dir / extra)
    acc = None
    res = src_dir / "result.json"
    if res.is_file():
        try:
            acc = float(json.loads(res.read_text())["accuracy"])
        except (ValueError, KeyError):
            acc = None
    return sha, acc


def _histogram(spec: ExploreSpec, folder: Path, runs_root: Path | None) -> tuple[str | None, dict]:
    """The (2^b, 2^b) operand histogram file for the spec's ``operands`` (None = uniform)."""
    from ..hw.power import load_histogram

    src = spec.operands
    if src in ("uniform", "", None):
        return None, {"operands": "uniform"}
    if src == "stats":
        from ..config import Stage, resolve_config
        from ..train import RunEnv, run_stage
        from ..train.pipeline import run_name

        s = spec.cnn
        scfg = resolve_config(spec.model_name, spec.dataset_name, Stage.STATS, bits=spec.bits,
                              signed=spec.signed, per_channel=s.per_channel if s else False,
                              seed=s.seed if s else 42,
                              include_linear=s.include_linear if s else False,
                              test_subset=s.test_subset if s else None)
        user_runs = spec.path(spec.runs_dir)
        found = user_runs / run_name(scfg) / "operand_stats.npz"
        if not found.is_file():
            # record it next to the quantized checkpoint (a normal stats run, reused by later
            # explorations); in the exploration's own runs folder if that one is read-only
            log.info("recording the operand histogram (stats stage) for %s", spec.model_name)
            target = user_runs
            if not os.access(user_runs, os.W_OK):
                target = runs_root or folder / "runs" / "stats"
                _copy_quantized(spec, target)
            env = RunEnv(runs_dir=target, data_dir=spec.path(spec.data_dir), progress=False)
            found = Path(run_stage(scfg, env)["operand_stats"])
        path = found
    else:
        path = spec.path(src)
    hist = load_histogram(path, spec.bits, spec.bits, spec.signed)
    sha = hashlib.sha256(np.ascontiguousarray(hist).tobytes()).hexdigest()
    out = folder / f"operands-{sha[:8]}.npy"
    if not out.is_file():
        np.save(out, hist)
    return str(out), {"operands": str(path), "operands_sha256": sha}


def prepare(spec: ExploreSpec, folder: Path) -> Prepared:
    """Everything the loop needs before the first candidate, and the settings hash."""
    from .. import __version__

    folder.mkdir(parents=True, exist_ok=True)
    liberty = None
    lib_sha = None
    if spec.hardware is not None:
        from ..hw.liberty import resolve_liberty
        from ..toolchain import find_tool

        for tool in ("yosys", "sta"):
            find_tool(tool)
        liberty = str(resolve_liberty(spec.path(spec.hardware.liberty) if spec.hardware.liberty else None))
        lib_sha = file_sha256(liberty)
    cnn_identity = None
    cnn_hash = None
    runs_root = None
    baseline = None
    q_sha = None
    if spec.cnn is not None:
        from ..config import Stage
        from ..models import model_info

        model_info(spec.model_name)  # unknown model -> ConfigError now
        cnn_identity = {"model": spec.model_name, "dataset": spec.dataset_name, "bits": spec.bits,
                        "signed": spec.signed, **spec.cnn.identity()}
        pre = digest({**cnn_identity, "stage": Stage.APPROXIMATE.value})
        runs_root = folder / "runs" / pre[:12]
        q_sha, baseline = _copy_quantized(spec, runs_root)
        cnn_identity["quantized_sha256"] = q_sha
        cnn_hash = digest(cnn_identity)
    operands, op_info = _histogram(spec, folder, runs_root)
    eda_identity = {"bits": spec.bits, "signed": spec.signed,
                    "operands_sha256": op_info.get("operands_sha256"),
                    "hardware": ({**spec.hardware.identity(), "liberty_sha256": lib_sha}
                                 if spec.hardware else None)}
    settings_hash = settings_digest(eda_identity, cnn_identity)
    return Prepared(spec, folder, settings_hash, eda_identity, cnn_identity, cnn_hash, runs_root,
                    liberty, operands, baseline,
                    {**op_info, "liberty": liberty, "quantized_sha256": q_sha,
                     "axcnn": __version__})


def save_spec(spec: ExploreSpec, folder: Path) -> None:
    (folder / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2, default=str) + "\n")


def load_saved_spec(folder: Path) -> ExploreSpec:
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise ConfigError(f"'{folder}' holds no exploration ({SPEC_FILE} missing); pass a spec "
                          "file: axcnn explore run SPEC.yaml --dir DIR")
    data = json.loads(path.read_text())
    base = data.pop("base_dir", ".")
    return spec_from_dict(data, base_dir=base)


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------

@dataclass
class _Task:
    kind: str
    key: str
    cand: Candidate
    row: dict | None = None
    job: Any = None
    lost: int = 0


#: tasks lost in a row (worker processes dying) before the whole run stops
LOST_LIMIT = 6


@dataclass
class Summary:
    folder: str
    settings_hash: str
    executor: str
    seen: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    cnn_runs: int = 0
    cnn_reused: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    source_errors: list = field(default_factory=list)

    @property
    def evaluated(self) -> int:
        return self.ok + self.failed

    @property
    def per_hour(self) -> float:
        return 3600.0 * self.ok / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["evaluated"] = self.evaluated
        d["candidates_per_hour"] = round(self.per_hour, 1)
        return d


class Coordinator:
    def __init__(self, prep: Prepared, store: ResultsStore, executor: Executor, *,
                 progress: bool = True, max_candidates: int | None = None):
        self.p = prep
        self.spec = prep.spec
        self.store = store
        self.ex = executor
        self.progress = progress
        self.max_candidates = max_candidates
        self.tasks: dict[int, _Task] = {}
        self.in_flight_keys: set[str] = set()
        self.cnn_waiting: dict[str, list[_Task]] = {}
        self.summary = Summary(str(prep.folder), prep.settings_hash, executor.describe())
        self.bar = None
        self.lost_in_row = 0

    # ------------------------------------------------------------------ rows
    def _base_row(self, key: str, cand: Candidate) -> dict:
        return {"key": key, "candidate_key": cand.key, "settings_hash": self.p.settings_hash,
                "name": cand.name, "source": cand.source, "kind": cand.kind,
                "verilog": cand.verilog, "info": cand.info,
                "workdir": str(self.p.folder / "work" / key[:16])}

    def _eda_row(self, base: dict, res: dict) -> dict:
        row = dict(base)
        m, w, hw = res["metrics"], res.get("weighted") or {}, res.get("hw") or {}
        row.update(lut_sha256=res["lut_sha256"], a_bits=res["a_bits"], w_bits=res["w_bits"],
                   signed=int(res["signed"]), exact=int(res["exact"]),
                   eda_seconds=res.get("seconds"), notes=res.get("notes") or None)
        for k in ("mae", "wce", "mred", "ep", "bias", "mse", "nmed"):
            row[k] = m.get(k)
        for k in ("mae", "wce", "mred", "ep", "bias", "mse"):
            row[f"w_{k}"] = w.get(k)
        for k in ("area_um2", "delay_ns", "power_w", "power_workload_w", "power_vectorless_w",
                  "energy_pj", "pda", "cells", "report"):
            row[k] = hw.get(k)
        return row

    def _finish(self, row: dict) -> None:
        self.store.write(row)
        if row["status"] == "ok":
            self.summary.ok += 1
            acc = row.get("accuracy")
            log.info("%-28s ok   acc %s  area %s  power %s  mae %.4g  (%s)", row["name"],
                     f"{acc:.2f}%" if acc is not None else "-",
                     f"{row['area_um2']:.1f}" if row.get("area_um2") is not None else "-",
                     f"{row['power_w']:.3g} W" if row.get("power_w") is not None else "-",
                     row.get("mae") or 0.0, row["source"])
        else:
            self.summary.failed += 1
            log.warning("%-28s FAILED (%s): %s", row["name"], row.get("stage"), row.get("error"))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(ok=self.summary.ok, failed=self.summary.failed, refresh=False)

    def _fail(self, task: _Task, res: dict, row: dict | None = None) -> None:
        row = dict(row or self._base_row(task.key, task.cand))
        row.update(status="failed", stage=res.get("stage", task.kind), error=res.get("error"))
        if res.get("traceback"):
            log.debug("%s: %s", task.cand.name, res["traceback"])
        if res.get("permanent"):
            row["attempts"] = self.spec.max_attempts
        self.in_flight_keys.discard(task.key)
        self._finish(row)

    # ------------------------------------------------------------------ submit
    def _submit_eda(self, key: str, cand: Candidate) -> None:
        job = EdaJob(cand, str(self.p.folder / "work" / key[:16]), self.spec.bits,
                     self.spec.signed, self.spec.hardware, self.p.liberty, self.p.operands)
        tid = self.ex.submit("eda", eda_task, job)
        self.tasks[tid] = _Task("eda", key, cand, job=job)
        self.in_flight_keys.add(key)

    def _lut_path(self, sha: str) -> Path:
        return self.p.folder / "luts" / f"{sha}.npz"

    def _to_cnn(self, task: _Task, row: dict, table: np.ndarray | None = None) -> None:
        sha = row["lut_sha256"]
        if row.get("a_bits") != self.spec.bits or row.get("w_bits") != self.spec.bits:
            self._fail(task, {"stage": "cnn", "permanent": True, "error":
                              f"a {row['a_bits']}x{row['w_bits']}-bit multiplier cannot run in the "
                              f"{self.spec.bits}-bit CNN (set the spec's bits to match)"}, row)
            return
        cached = self.store.cnn_result(sha, self.p.cnn_hash)
        if cached is not None:
            self.summary.cnn_reused += 1
            self._complete(task, row, cached)
            return
        task.row = row
        if sha in self.cnn_waiting:     # the same function is being evaluated already
            self.cnn_waiting[sha].append(task)
            self.summary.cnn_reused += 1
            return
        if table is None:
            from ..lut import load_lut

            table = load_lut(self._lut_path(sha)).table
        job = CnnJob(sha, np.asarray(table, dtype=np.int32), bool(row.get("signed")),
                     str(self._lut_path(sha)), str(self.p.runs_root), self.spec.model_name,
                     self.spec.dataset_name, str(self.spec.path(self.spec.data_dir))
                     if self.spec.data_dir else None, self.spec.bits, self.spec.cnn)
        tid = self.ex.submit("cnn", cnn_task, job)
        self.tasks[tid] = _Task("cnn", sha, task.cand, job=job)
        self.cnn_waiting[sha] = [task]
        self.summary.cnn_runs += 1

    def _complete(self, task: _Task, row: dict, cnn: dict) -> None:
        row = dict(row)
        acc = float(cnn["accuracy"])
        row.update(status="ok", stage=None, error=None, accuracy=acc,
                   cnn_run=cnn.get("run_dir"), cnn_seconds=cnn.get("seconds"),
                   accuracy_drop=(self.p.baseline_accuracy - acc)
                   if self.p.baseline_accuracy is not None else None)
        self.in_flight_keys.discard(task.key)
        self._finish(row)

    # ------------------------------------------------------------------ results
    def _on_result(self, tid: int, res: dict) -> None:
        task = self.tasks.pop(tid)
        if res.get("infrastructure"):
            # a worker died (killed, out of memory) or the pool broke: every task in flight is
            # lost, not only the culprit, so each one is tried once more before it counts
            self.lost_in_row += 1
            if self.lost_in_row > LOST_LIMIT:
                from ..errors import ToolError

                raise ToolError(f"{self.lost_in_row} tasks in a row were lost because worker "
                                f"processes died (last: {res.get('error')}); check the memory "
                                "and explore.log, or run with --workers 1")
            if task.lost < 1:
                log.warning("%s: %s; trying it again", task.cand.name, res.get("error"))
                fn = eda_task if task.kind == "eda" else cnn_task
                new = self.ex.submit(task.kind, fn, task.job)
                task.lost += 1
                self.tasks[new] = task
                return
        else:
            self.lost_in_row = 0
        if task.kind == "eda":
            if not res.get("ok"):
                self._fail(task, res)
                return
            row = self._eda_row(self._base_row(task.key, task.cand), res)
            write_lut(res["lut"], bool(res["signed"]), self._lut_path(res["lut_sha256"]))
            if self.spec.cnn is None:
                row["status"] = "ok"
                self.in_flight_keys.discard(task.key)
                self._finish(row)
                return
            row["status"] = "partial"
            self.store.write(row)
            self._to_cnn(task, row, res["lut"])
            return
        waiting = self.cnn_waiting.pop(task.key, [])
        if res.get("ok"):
            self.store.write_cnn(task.key, self.p.cnn_hash, res)
            for t in waiting:
                self._complete(t, t.row, res)
        else:
            for t in waiting:
                self._fail(t, res, t.row)

    # ------------------------------------------------------------------ candidates
    def _on_candidate(self, cand: Candidate) -> None:
        key = row_key(cand.key, self.p.settings_hash)
        if key in self.in_flight_keys:
            return                       # the same circuit from another source, in flight
        self.summary.seen += 1
        if self.bar is not None:
            self.bar.total = self.summary.seen
            self.bar.refresh()
        st = self.store.status_of(key)
        if st is not None:
            status, attempts = st
            if status == "ok" or (status == "failed" and attempts >= self.spec.max_attempts):
                self.summary.skipped += 1
                if self.bar is not None:
                    self.bar.update(1)
                return
            if status == "partial" and self.spec.cnn is not None:
                row = self.store.row(key)
                if row and self._lut_path(row["lut_sha256"]).is_file():
                    self.in_flight_keys.add(key)
                    self._to_cnn(_Task("eda", key, cand), row)
                    return
        self._submit_eda(key, cand)

    # ------------------------------------------------------------------ main loop
    def run(self) -> Summary:
        from tqdm import tqdm

        sources = make_sources(self.spec)
        ctx = SourceContext(self.p.folder, self.spec)
        q: queue.Queue = queue.Queue()

        def produce():
            try:
                for src in sources:
                    if ctx.stop.is_set():
                        break
                    try:
                        for cand in src.candidates(ctx):
                            q.put(("cand", cand))
                            if ctx.stop.is_set():
                                break
                    except Exception as exc:  # noqa: BLE001 - reported by the coordinator
                        q.put(("error", (src.label, exc)))
            finally:
                q.put(("end", None))

        t0 = time.perf_counter()
        self.bar = tqdm(total=0, unit="cand", desc="explore", disable=not self.progress,
                        dynamic_ncols=True)
        producer = threading.Thread(target=produce, name="explore-sources", daemon=True)
        producer.start()
        sources_done = False
        backlog: list[Candidate] = []
        limit = self.max_candidates
        try:
            while True:
                # take candidates while there is room in the executor
                while len(self.tasks) < self.ex.capacity and (backlog or not sources_done):
                    if limit is not None and self.summary.seen >= limit:
                        sources_done = True
                        ctx.stop.set()
                        backlog.clear()
                        break
                    if backlog:
                        self._on_candidate(backlog.pop(0))
                        continue
                    try:
                        kind, item = q.get(timeout=0.05 if self.tasks else 0.5)
                    except queue.Empty:
                        break
                    if kind == "cand":
                        self._on_candidate(item)
                    elif kind == "error":
                        label, exc = item
                        msg = str(exc) or type(exc).__name__
                        log.error("source %s stopped: %s", label, msg)
                        self.summary.source_errors.append({"source": label, "error": msg})
                    else:
                        sources_done = True
                for tid, res in self.ex.poll(0.2 if self.tasks else 0.0):
                    self._on_result(tid, res)
                if sources_done and not backlog and not self.tasks:
                    break
        except KeyboardInterrupt:
            self.summary.interrupted = True
            ctx.stop.set()
            raise
        finally:
            ctx.stop.set()
            self.summary.seconds = time.perf_counter() - t0
            self.bar.close()
            producer.join(timeout=5)
        return self.summary


def run_exploration(spec: ExploreSpec, folder: str | os.PathLike, *, progress: bool = True,
                    max_candidates: int | None = None, executor: Executor | None = None) -> Summary:
    """Run (or resume) an exploration in ``folder``; returns what this run did."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for src in make_sources(spec):     # fail fast: missing folders, tools, checkouts
        src.check()
    lock = FolderLock(folder)
    lock.acquire()
    handler = None
    old_term = _catch_sigterm()
    try:
        (folder / "logs").mkdir(exist_ok=True)
        handler = logging.FileHandler(folder / "logs" / "explore.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("axcnn").addHandler(handler)
        if logging.getLogger("axcnn").level == logging.NOTSET:
            logging.getLogger("axcnn").setLevel(logging.INFO)
        train_log = logging.getLogger("axcnn.train")
        train_level = train_log.level
        train_log.setLevel(max(logging.WARNING, train_log.getEffectiveLevel()))
        prep = prepare(spec, folder)
        save_spec(spec, folder)
        store = ResultsStore(store_path(folder))
        store.set_meta(name=spec.name, spec=spec.to_dict(), settings_hash=prep.settings_hash,
                       eda_settings=prep.eda_identity, cnn_settings=prep.cnn_identity,
                       baseline_accuracy=prep.baseline_accuracy, info=prep.info,
                       started_at=time.time())
        ex = executor or make_executor(spec.executor)
        log.info("exploration %s in %s: %s, settings %s", spec.name, folder, ex.describe(),
                 prep.settings_hash[:12])
        summary = None
        try:
            coord = Coordinator(prep, store, ex, progress=progress, max_candidates=max_candidates)
            summary = coord.run()
        finally:
            if executor is None:
                ex.close(wait=summary is not None)
            if summary is not None:
                store.set_meta(finished_at=time.time(), last_run=summary.to_dict())
                (folder / "logs" / "last_run.json").write_text(
                    json.dumps(summary.to_dict(), indent=2) + "\n")
            store.close()
        return summary
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if handler is not None:
            logging.getLogger("axcnn.train").setLevel(train_level)
            logging.getLogger("axcnn").removeHandler(handler)
            handler.close()
        lock.release()


def _catch_sigterm():
    """SIGTERM (a scheduler's stop, ``kill``) stops the run like Ctrl-C: tasks in flight are
    dropped, finished rows stay, the lock is released. Returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, stop)
    except (ValueError, OSError):
        return None


# --------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------

def exploration_status(folder: str | os.PathLike) -> dict[str, Any]:
    """What an exploration folder holds: counts, settings, SubXPAT runs, the running coordinator."""
    folder = Path(folder)
    with ResultsStore(store_path(folder), readonly=True) as store:
        meta = store.meta()
        counts = store.counts()
        current = meta.get("settings_hash")
        rows = store.rows()
    totals: dict[str, int] = {}
    for per in counts.values():
        for st, n in per.items():
            totals[st] = totals.get(st, 0) + n
    ok = [r for r in rows if r["status"] == "ok" and r["settings_hash"] == current]
    best = sorted((r for r in ok if r.get("accuracy") is not None),
                  key=lambda r: -(r["accuracy"] or 0))[:5]
    failures = [{"name": r["name"], "source": r["source"], "stage": r["stage"],
                 "attempts": r["attempts"], "error": r["error"]}
                for r in rows if r["status"] == "failed"][-10:]
    runs = []
    for state in sorted((folder / "sources" / "subxpat").glob("*/state.json")):
        try:
            s = json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        runs.append({"run": state.parent.name, "status": s.get("status"),
                     "circuits": len(s.get("circuits", {})), "args": " ".join(s.get("args", [])),
                     "seconds": s.get("seconds")})
    last = meta.get("last_run") or {}
    return {"folder": str(folder), "name": meta.get("name"), "running_pid": holder(folder),
            "settings_hash": current, "baseline_accuracy": meta.get("baseline_accuracy"),
            "counts": counts, "totals": totals,
            "other_settings_rows": sum(1 for r in rows if r["settings_hash"] != current),
            "best": [{"name": r["name"], "accuracy": r["accuracy"], "area_um2": r["area_um2"],
                      "power_w": r["power_w"], "mae": r["mae"]} for r in best],
            "failures": failures, "subxpat_runs": runs, "last_run": last,
            "updated_at": max((r["updated_at"] or 0 for r in rows), default=None)}
