"""The work done for one candidate, in a worker: EDA (LUT, errors, hardware) and CNN accuracy.

Two task functions, both plain picklable callables that return a dict and never raise (an
error becomes ``{"ok": False, "error": ...}``), so every executor (in-process, process pool,
Ray) moves the same data and gives the same rows:

* :func:`eda_task` (CPU): the candidate's LUT (from its LUT file, its C model or by simulating
  its Verilog), uniform and workload-weighted error metrics and, for a circuit with hardware
  evaluation on, the full report of :func:`axcnn.hw.circuit_report` (area, delay, workload
  and vectorless power) in the candidate's work folder.
* :func:`cnn_task` (GPU when there is one): the approximate stage of the training pipeline
  on that LUT (calibration, optional retraining, test accuracy), in a runs folder that holds
  a copy of the quantized checkpoint. The pipeline's own rules apply: a finished run is read
  back, an interrupted one resumes from its last epoch.

The coordinator (:mod:`~axcnn.explore.runner`) decides what to run and is the only writer of
the results store; workers only write inside their work and runs folders.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .candidates import Candidate
from .spec import CnnSettings, HardwareSettings

log = logging.getLogger("axcnn.explore")

LUT_NAME = "cand"   # every explore LUT has this name: run folders differ only by content hash


@dataclass(frozen=True)
class EdaJob:
    candidate: Candidate
    workdir: str
    bits: int
    signed: bool
    hardware: HardwareSettings | None
    liberty: str | None
    operands: str | None          # a (2^b, 2^b) histogram .npy, or None for uniform


@dataclass(frozen=True)
class CnnJob:
    lut_sha256: str
    table: np.ndarray
    signed: bool
    lut_path: str
    runs_root: str
    model: str
    dataset: str
    data_dir: str | None
    bits: int
    settings: CnnSettings


def _error(stage: str, exc: BaseException) -> dict:
    from ..errors import AxcnnError

    msg = str(exc) if isinstance(exc, AxcnnError) else f"{type(exc).__name__}: {exc}"
    return {"ok": False, "stage": stage, "error": msg.strip() or type(exc).__name__,
            "traceback": "" if isinstance(exc, AxcnnError) else traceback.format_exc(limit=8)}


def load_weights(path: str | None, a_bits: int, w_bits: int) -> np.ndarray:
    """The operand histogram for an (a_bits x w_bits) LUT: uniform, or rebinned to its bits."""
    if path is None:
        return np.ones((1 << a_bits, 1 << w_bits))
    from ..lut.metrics import rebin_histogram

    hist = np.load(path, allow_pickle=False).astype(np.float64)
    if hist.shape == (1 << a_bits, 1 << w_bits):
        return hist
    return rebin_histogram(hist, a_bits, w_bits)


def hardware_summary(report: dict, power: str) -> dict:
    """The row's hardware columns from a circuit report."""
    wl = report["power"]["workload"]
    vl = report["power"].get("vectorless") or {}
    p = wl["total_W"] if power == "workload" else vl.get("total_W", wl["total_W"])
    area, delay = report.get("area_um2"), report.get("delay_ns")
    pda = area * p * delay if None not in (area, p, delay) else None
    return {"area_um2": area, "delay_ns": delay, "power_w": p,
            "power_workload_w": wl["total_W"], "power_vectorless_w": vl.get("total_W"),
            "energy_pj": wl.get("energy_per_op_pJ"), "pda": pda,
            "cells": report["cells"]["total"], "mapped_equivalent": report["mapped_equivalent"],
            "liberty": report["liberty"].get("name"), "report": str(Path(report["workdir"]) / "report.json")}


def eda_task(job: EdaJob) -> dict:
    """LUT, error metrics and hardware report of one candidate (never raises)."""
    try:
        return _eda(job)
    except BaseException as exc:  # noqa: BLE001 - the coordinator records it
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _error("eda", exc)


def _eda(job: EdaJob) -> dict:
    from ..lut import MultiplierLUT, load_lut, lut_metrics, weighted_metrics

    cand = job.candidate
    wd = Path(job.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    notes: list[str] = []
    hw = None
    lut: MultiplierLUT | None = None
    if cand.kind == "lut":
        lut = load_lut(cand.lut, signed=cand.signed)
    else:
        c_lut = None
        if cand.c_model:
            from .evoapprox import c_model_table

            bits = job.bits
            table = c_model_table(cand.c_model, bits, bits, bool(cand.signed), wd / "c_model",
                                  timeout=job.hardware.timeout_s if job.hardware else None)
            c_lut = MultiplierLUT(table, signed=bool(cand.signed), name=cand.name,
                                  provenance={"source": "c_model", "path": cand.c_model})
        if job.hardware is not None and cand.verilog:
            from ..hw.report import circuit_report

            h = job.hardware
            report = circuit_report(cand.verilog, workdir=wd / "hw", liberty=job.liberty,
                                    operands=job.operands or "uniform", signed=cand.signed,
                                    convention=cand.ports, top=cand.top, clock_ns=h.clock_ns,
                                    vectors=h.vectors, seed=h.seed, delay_model=h.delay_model,
                                    timeout=h.timeout_s, name=cand.name)
            hw = hardware_summary(report, h.power)
            lut = load_lut(report["lut"]["path"])
            if c_lut is not None and c_lut != lut:
                bad = int(np.count_nonzero(c_lut.table != lut.table))
                notes.append(f"the C model and the Verilog differ on {bad} operand pairs; "
                             "the LUT is the C model's")
                lut = c_lut
            elif c_lut is not None:
                lut = c_lut
        elif c_lut is not None:
            lut = c_lut
        elif cand.verilog:
            from ..hw.simulate import verilog_to_lut

            sim = verilog_to_lut(cand.verilog, workdir=wd / "simulate", signed=cand.signed,
                                 convention=cand.ports, top=cand.top, name=cand.name,
                                 timeout=job.hardware.timeout_s if job.hardware else None)
            lut = sim.lut
        else:
            from ..errors import ConfigError

            raise ConfigError(f"candidate {cand.name} has neither a Verilog file nor a C model")
    assert lut is not None
    metrics = lut_metrics(lut)
    try:
        weighted = weighted_metrics(lut, load_weights(job.operands, lut.a_bits, lut.w_bits))
    except Exception as exc:  # noqa: BLE001 - e.g. a LUT wider than the histogram
        weighted = None
        notes.append(f"no workload-weighted error: {exc}")
    return {"ok": True, "lut": np.ascontiguousarray(lut.table, dtype=np.int32),
            "lut_sha256": lut.sha256, "a_bits": lut.a_bits, "w_bits": lut.w_bits,
            "signed": lut.signed, "exact": lut.is_exact(), "metrics": metrics,
            "weighted": weighted, "hw": hw, "notes": notes,
            "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()}


# --------------------------------------------------------------------------------------
# CNN accuracy
# --------------------------------------------------------------------------------------

_DATA: dict[tuple, Any] = {}


def cnn_config(job: CnnJob):
    """The approximate-stage RunConfig of a CNN job."""
    from ..config import Stage, resolve_config

    s = job.settings
    optim = {"epochs": s.effective_epochs, "lr": s.lr, "batch_size": s.batch_size}
    return resolve_config(job.model, job.dataset, Stage.APPROXIMATE, bits=job.bits,
                          retrain=s.retrain, optim_overrides=optim, lut=job.lut_path,
                          signed=job.signed, per_channel=s.per_channel, seed=s.seed,
                          exact_accuracy=s.exact_accuracy, keep_first=s.keep_first,
                          include_linear=s.include_linear, calib_batches=s.calib_batches,
                          train_subset=s.train_subset, test_subset=s.test_subset)


def _env(job: CnnJob):
    from ..ops import Backend
    from ..train import RunEnv

    return RunEnv(runs_dir=Path(job.runs_root), data_dir=Path(job.data_dir) if job.data_dir else None,
                  device=job.settings.device, backend=Backend(job.settings.backend)
                  if job.settings.backend != "auto" else Backend.AUTO, progress=False)


def _dataset(cfg, env):
    from ..train.pipeline import load_data, resolve_device

    key = (cfg.dataset, str(env.data_dir), cfg.train_subset, cfg.test_subset, cfg.seed,
           resolve_device(env.device))
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_data(cfg, env)
    return _DATA[key]


def write_lut(table: np.ndarray, signed: bool, path: str | os.PathLike) -> Path:
    """Save an explore LUT (content-addressed path) unless it is already there."""
    from ..lut import MultiplierLUT, save_lut

    p = Path(path)
    if p.is_file():
        return p
    return save_lut(MultiplierLUT(table, signed=signed, name=LUT_NAME,
                                  provenance={"source": "explore"}), p)


def cnn_task(job: CnnJob) -> dict:
    """Accuracy of the CNN with the job's LUT (never raises)."""
    try:
        return _cnn(job)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _error("cnn", exc)


def _cnn(job: CnnJob) -> dict:
    from ..train import run_stage

    t0 = time.perf_counter()
    write_lut(job.table, job.signed, job.lut_path)
    cfg = cnn_config(job)
    env = _env(job)
    data = _dataset(cfg, env)
    res = run_stage(cfg, env, data=data)
    return {"ok": True, "accuracy": float(res["accuracy"]), "best_epoch": res.get("best_epoch"),
            "epochs": res.get("epochs"), "aborted": bool(res.get("aborted", False)),
            "run_dir": res.get("run_dir"), "cached": bool(res.get("cached", False)),
            "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()}


def init_worker(threads: int | None = None) -> None:
    """Process-pool / Ray worker setup: quiet logging, a fair share of CPU threads."""
    logging.getLogger("axcnn").setLevel(logging.WARNING)
    if threads:
        try:
            import torch

            torch.set_num_threads(max(1, int(threads)))
        except Exception:  # noqa: BLE001
            pass
