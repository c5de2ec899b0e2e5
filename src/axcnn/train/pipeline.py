"""The staged pipeline: exact -> quantized -> approximate (one run per LUT) -> operand statistics.

Each stage is a run directory under ``runs_dir``, named from its content
(``<model>-<dataset>/<stage>[-<bits>][-<lut>-<sha8>][-<retrain>]``), holding ``config.json``
(the resolved config), ``metrics.jsonl`` (one line per epoch), ``best.pt`` (the best epoch,
which is the one reported), ``last.pt`` (everything needed to resume) and ``result.json``.
A finished run is not redone; an interrupted one resumes from ``last.pt``.

Stage rules (the seed's, with its bugs fixed): the quantized stage starts from the exact
run's best checkpoint, calibrates (eval mode, no_grad: BatchNorm statistics untouched) and
fine-tunes; the approximate stage always starts from the quantized run's best checkpoint,
re-calibrates with the LUT in place and optionally retrains (STE or error-aware); epoch 0 is
the calibrated model before any training. The early-abort rule (``exact_accuracy``) stops an
approximate retraining whose accuracy falls below ``exact_accuracy - 3`` and reports the best
epoch, not the last.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fileio import write_json
from ..config import Retrain, RunConfig, Stage, config_diff
from ..data import ImageDataset, load_dataset
from ..errors import ConfigError, DataError, LUTError
from ..lut import DEFAULT_WINDOW, MultiplierLUT, load_lut, lut_metrics
from ..models import create_model
from ..nn import ConversionPlan, Mode, approx_layers, convert_, record_operands
from ..ops import Backend, GradRule
from ..quant import QuantSpec, calibrate, calibrate_batchnorm
from .checkpoint import checkpoint_meta, load_checkpoint, save_checkpoint
from .loop import evaluate, make_optimizer, train_epoch

log = logging.getLogger("axcnn.train")


@dataclass(frozen=True)
class RunEnv:
    """Where and how runs execute (not part of a run's identity)."""

    runs_dir: Path = Path("runs")
    data_dir: Path | None = None
    device: str = "cpu"
    backend: Backend = Backend.AUTO
    progress: bool = True
    force: bool = False
    download: bool = False
    deadline: float | None = None  # time.monotonic() after which no new epoch starts


#: exit code of a command stopped by its time budget (rerun it to continue)
EXIT_INCOMPLETE = 75


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was requested but CUDA is not available here; use --device cpu")
    return device


def device_label(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` for a GPU, ``cpu`` otherwise (kept in result.json)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def load_run_lut(cfg: RunConfig) -> MultiplierLUT | None:
    if cfg.lut is None:
        return None
    return load_lut(cfg.lut, signed=cfg.signed, bits=cfg.bits)


def run_name(cfg: RunConfig, lut: MultiplierLUT | None = None) -> str:
    """The run directory of ``cfg``, relative to the runs directory."""
    parts = [cfg.stage.value]
    if cfg.stage is not Stage.EXACT:
        parts.append(f"{cfg.bits}{'s' if cfg.signed else 'u'}" + ("-pc" if cfg.per_channel else ""))
    if cfg.stage is Stage.APPROXIMATE:
        lut = lut or load_run_lut(cfg)
        parts += [lut.name, lut.short_hash, "noretrain" if cfg.retrain is Retrain.NONE else cfg.retrain.value]
        if cfg.retrain is Retrain.ERROR_AWARE and cfg.window != DEFAULT_WINDOW:
            parts.append(f"w{cfg.window}")
        if cfg.keep_first:
            parts.append(f"first-{cfg.keep_first}")
        if cfg.post_calibration:
            parts.append("postcal")
        if cfg.bn_calibration:
            parts.append("bncal")
        if cfg.tag:
            parts.append(cfg.tag)
    return f"{cfg.model}-{cfg.dataset}/" + "-".join(parts)


def remake_command(cfg: RunConfig, stage: Stage) -> str:
    cmd = f"axcnn train --model {cfg.model} --dataset {cfg.dataset} --stage {stage.value}"
    if stage is not Stage.EXACT:
        cmd += f" --bits {cfg.bits}" + (" --signed" if cfg.signed else "") + (" --per-channel" if cfg.per_channel else "")
    return cmd


def conversion_plan(cfg: RunConfig, mode: Mode, lut: MultiplierLUT | None, backend: Backend) -> ConversionPlan:
    spec = QuantSpec(cfg.bits, cfg.bits, cfg.signed, cfg.per_channel)
    grad = GradRule.ERROR_AWARE if cfg.retrain is Retrain.ERROR_AWARE else GradRule.STE
    first = Mode.parse(cfg.keep_first) if (cfg.keep_first and mode is Mode.APPROXIMATE) else None
    return ConversionPlan(mode=mode, spec=spec, lut=lut, first_layer=first,
                          include_linear=cfg.include_linear, grad_rule=grad, backend=backend,
                          window=cfg.window)


def load_data(cfg: RunConfig, env: RunEnv) -> ImageDataset:
    data = load_dataset(cfg.dataset, env.data_dir, download=env.download)
    if cfg.train_subset or cfg.test_subset:
        data = data.subset(cfg.train_subset, cfg.test_subset, seed=cfg.seed)
    return data.to(resolve_device(env.device))


def _prerequisite(cfg: RunConfig, stage: Stage, env: RunEnv) -> dict:
    """The best checkpoint of the run ``cfg`` builds on (exact or quantized)."""
    dep = RunConfig(model=cfg.model, dataset=cfg.dataset, stage=stage, bits=cfg.bits,
                    signed=cfg.signed, per_channel=cfg.per_channel, seed=cfg.seed,
                    include_linear=cfg.include_linear,
                    train_subset=cfg.train_subset, test_subset=cfg.test_subset)
    path = env.runs_dir / run_name(dep) / "best.pt"
    cmd = remake_command(cfg, stage)
    if not path.is_file():
        raise ConfigError(f"the {cfg.stage.value} stage needs the {stage.value} checkpoint "
                          f"'{path}', which does not exist; create it with: {cmd}")
    return load_checkpoint(path, remake=cmd)


def build_model(cfg: RunConfig, data: ImageDataset, env: RunEnv,
                lut: MultiplierLUT | None) -> tuple[nn.Module, list[dict]]:
    """The model of a stage, with its starting weights (from the previous stage)."""
    device = data.device
    model = create_model(cfg.model, num_classes=data.num_classes,
                         in_channels=data.image_shape[0]).to(device)
    rows: list[dict] = []
    if cfg.stage is Stage.EXACT:
        return model, rows
    if cfg.stage is Stage.QUANTIZED:
        state = _prerequisite(cfg, Stage.EXACT, env)["state_dict"]
        model.load_state_dict(state)
        rows = convert_(model, conversion_plan(cfg, Mode.QUANTIZED, None, env.backend))
        return model, rows
    state = _prerequisite(cfg, Stage.QUANTIZED, env)["state_dict"]
    convert_(model, conversion_plan(cfg, Mode.QUANTIZED, None, env.backend))
    model.load_state_dict(state)
    if cfg.stage is Stage.APPROXIMATE:
        rows = convert_(model, conversion_plan(cfg, Mode.APPROXIMATE, lut, env.backend))
    return model, rows


def _calibrate(model: nn.Module, cfg: RunConfig, data: ImageDataset) -> None:
    """Set the activation ranges of a stage's model. ``post_calibration`` (the seed's
    ``--approx_post_calibration``): the approximate layers calibrate with exact products (as
    in the quantized model) and turn approximate afterwards, so the ranges come from
    quantized-exact activations rather than approximate ones. ``bn_calibration``: then the
    BatchNorm statistics are re-estimated on the same batches with the model as it now
    computes (no training)."""
    switched = ([m for _, m in approx_layers(model) if m.mode is Mode.APPROXIMATE]
                if cfg.post_calibration else [])
    for m in switched:
        m.configure(Mode.QUANTIZED, m.spec, None, m.grad_rule, m.backend, m.window)
    try:
        calibrate(model, _calib_batches(cfg, data), max_batches=cfg.calib_batches)
    finally:
        for m in switched:
            m.configure(Mode.APPROXIMATE, m.spec, None, m.grad_rule, m.backend, m.window)
    if cfg.bn_calibration:
        calibrate_batchnorm(model, _calib_batches(cfg, data), max_batches=cfg.calib_batches)


def _calib_batches(cfg: RunConfig, data: ImageDataset):
    gen = torch.Generator(device=data.device).manual_seed(cfg.seed + 1)
    from ..data import Augment
    return data.train_batches(cfg.optim.batch_size, generator=gen, augment=Augment.NONE)


def _meta(cfg: RunConfig, lut: MultiplierLUT | None) -> dict:
    return checkpoint_meta(model=cfg.model, dataset=cfg.dataset, stage=cfg.stage.value, bits=cfg.bits,
                           signed=cfg.signed, per_channel=cfg.per_channel,
                           lut_name=lut.name if lut else None, lut_sha256=lut.sha256 if lut else None,
                           retrain=cfg.retrain.value)


def _rng_state(gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state(), "data_device": gen.device.type}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator, reseed: int) -> bool:
    """Restore the random state of a checkpoint; returns False when the run moved to another
    kind of device (a GPU run resumed on a CPU or back), whose data generator cannot take the
    saved state: it is then reseeded with ``reseed`` and later batches come in another order."""
    torch.set_rng_state(state["torch"])
    same = state.get("data_device", gen.device.type) == gen.device.type
    if same:
        try:
            gen.set_state(state["data"])
        except RuntimeError:  # checkpoints from before "data_device" was saved
            same = False
    if not same:
        gen.manual_seed(reseed)
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return same


def prepare_run_dir(cfg: RunConfig, env: RunEnv, lut: MultiplierLUT | None) -> Path:
    rdir = env.runs_dir / run_name(cfg, lut)
    cfg_path = rdir / "config.json"
    if cfg_path.is_file():
        try:
            old = RunConfig.from_dict(json.loads(cfg_path.read_text()))
            diff = config_diff(old, cfg)
        except Exception as exc:  # unreadable config: treat as different
            diff = [f"unreadable config.json ({exc})"]
        if diff and not env.force:
            raise ConfigError(f"run directory '{rdir}' holds a run with a different configuration "
                              f"({'; '.join(diff[:4])}); pass --force to restart it or use another --runs-dir")
        if diff:
            shutil.rmtree(rdir)
    elif env.force and rdir.exists():
        shutil.rmtree(rdir)
    if env.force and (rdir / "result.json").exists():
        shutil.rmtree(rdir)
    rdir.mkdir(parents=True, exist_ok=True)
    write_json(cfg_path, cfg.to_dict())
    return rdir


def run_stage(cfg: RunConfig, env: RunEnv, data: ImageDataset | None = None) -> dict[str, Any]:
    """Run (or resume, or return the finished result of) one stage; returns its result dict."""
    lut = load_run_lut(cfg) if cfg.stage is Stage.APPROXIMATE else None
    rdir = prepare_run_dir(cfg, env, lut)
    result_path = rdir / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        result["cached"] = True
        log.info("%s: already finished (%.2f%%), not redone; --force reruns it", rdir, result["accuracy"])
        return result
    if env.deadline is not None and time.monotonic() >= env.deadline:
        return _incomplete(rdir, 0, None)
    torch.manual_seed(cfg.seed)
    data = data if data is not None else load_data(cfg, env)
    model, rows = build_model(cfg, data, env, lut)
    label = run_name(cfg, lut)
    if cfg.stage is Stage.STATS:
        return _run_stats(cfg, model, data, rdir, env)
    gen = torch.Generator(device=data.device).manual_seed(cfg.seed)
    optimizer, scheduler = make_optimizer(model, cfg.optim)
    metrics_path = rdir / "metrics.jsonl"
    last_path = rdir / "last.pt"
    t_start = time.perf_counter()
    if last_path.is_file():
        ck = load_checkpoint(last_path, remake=f"(delete {rdir} and rerun)")
        model.load_state_dict(ck["state_dict"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        epoch, best = int(ck["epoch"]), dict(ck["best"])
        if not _set_rng_state(ck["rng"], gen, cfg.seed + epoch):
            log.warning("%s: the checkpoint was written on another kind of device; resuming on %s "
                        "with a reseeded data order (results differ from an uninterrupted run)",
                        label, data.device)
        _truncate_metrics(metrics_path, epoch)
        log.info("%s: resuming after epoch %d (best %.2f%%)", label, epoch, best["accuracy"])
    else:
        epoch = 0
        if cfg.stage is not Stage.EXACT:
            log.info("%s: calibrating on %d batches%s", label, cfg.calib_batches,
                     " with exact products (post-calibration)" if cfg.post_calibration else "")
            _calibrate(model, cfg, data)
        ev = evaluate(model, data, progress=env.progress, desc=f"{cfg.stage.value} test")
        best = {"accuracy": ev["accuracy"], "epoch": 0}
        _append_metrics(metrics_path, {"epoch": 0, "test_accuracy": ev["accuracy"], "test_loss": ev["loss"]})
        log.info("%s: epoch 0 (%s) test accuracy %.2f%%", label,
                 "initial" if cfg.stage is Stage.EXACT else "calibrated", ev["accuracy"])
        save_checkpoint(rdir / "best.pt", {"state_dict": model.state_dict(), "meta": _meta(cfg, lut),
                                           "epoch": 0, "accuracy": ev["accuracy"]})
        _save_last(last_path, model, optimizer, scheduler, gen, 0, best, cfg, lut)
    aborted = False
    epoch_times = []
    while epoch < cfg.optim.epochs:
        if env.deadline is not None:
            estimate = max(epoch_times) if epoch_times else 0.0
            if time.monotonic() + estimate >= env.deadline:
                log.warning("%s: time budget reached after epoch %d of %d; rerun to continue",
                            label, epoch, cfg.optim.epochs)
                return _incomplete(rdir, epoch, best)
        t_epoch = time.perf_counter()
        epoch += 1
        tr = train_epoch(model, data, optimizer, cfg.optim.batch_size, gen, progress=env.progress,
                         desc=f"{cfg.stage.value} epoch {epoch}/{cfg.optim.epochs}")
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        ev = evaluate(model, data, progress=env.progress)
        epoch_times.append(time.perf_counter() - t_epoch)
        _append_metrics(metrics_path, {"epoch": epoch, **tr, "test_accuracy": ev["accuracy"],
                                       "test_loss": ev["loss"], "lr": lr})
        log.info("%s: epoch %d/%d loss %.4f train %.2f%% test %.2f%% (%.1f s)", label, epoch,
                 cfg.optim.epochs, tr["train_loss"], tr["train_accuracy"], ev["accuracy"], tr["train_seconds"])
        if ev["accuracy"] > best["accuracy"]:
            best = {"accuracy": ev["accuracy"], "epoch": epoch}
            save_checkpoint(rdir / "best.pt", {"state_dict": model.state_dict(), "meta": _meta(cfg, lut),
                                               "epoch": epoch, "accuracy": ev["accuracy"]})
        _save_last(last_path, model, optimizer, scheduler, gen, epoch, best, cfg, lut)
        if (cfg.stage is Stage.APPROXIMATE and cfg.exact_accuracy is not None
                and ev["accuracy"] < cfg.exact_accuracy - 3):
            log.warning("%s: not_good_enough: %.2f%% < %.2f%% - 3; stopping", label, ev["accuracy"], cfg.exact_accuracy)
            aborted = True
            break
    result = {"run_dir": str(rdir), "model": cfg.model, "dataset": cfg.dataset, "stage": cfg.stage.value,
              "bits": cfg.bits, "signed": cfg.signed, "retrain": cfg.retrain.value,
              "accuracy": best["accuracy"], "best_epoch": best["epoch"], "epochs": epoch,
              "aborted": aborted, "seconds": time.perf_counter() - t_start,
              "seconds_per_epoch": _mean_train_seconds(metrics_path),
              "device": device_label(data.device), "layers": rows}
    if lut is not None:
        result["lut"] = {**lut.metadata(), "metrics": lut_metrics(lut)}
    write_json(result_path, result)
    return result


def _incomplete(rdir: Path, epoch: int, best: dict | None) -> dict[str, Any]:
    return {"run_dir": str(rdir), "incomplete": True, "epochs": epoch,
            "accuracy": best["accuracy"] if best else None}


def _mean_train_seconds(metrics_path: Path) -> float | None:
    """Mean training time per epoch over every epoch of the run (resumed chunks included)."""
    secs = [json.loads(line).get("train_seconds") for line in metrics_path.read_text().splitlines()]
    secs = [s for s in secs if s is not None]
    return sum(secs) / len(secs) if secs else None


def _save_last(path, model, optimizer, scheduler, gen, epoch, best, cfg, lut) -> None:
    save_checkpoint(path, {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "rng": _rng_state(gen),
                           "epoch": epoch, "best": best, "meta": _meta(cfg, lut)})


def _append_metrics(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_metrics(path: Path, epoch: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= epoch:
                keep.append(line)
        except (ValueError, KeyError):
            continue
    path.write_text("".join(line + "\n" for line in keep))


def _run_stats(cfg: RunConfig, model: nn.Module, data: ImageDataset, rdir: Path, env: RunEnv) -> dict:
    path = rdir / "operand_stats.npz"
    with record_operands(model, path) as rec:
        ev = evaluate(model, data, progress=env.progress, desc="operand statistics")
    layers = {name: {"multiplications": int(h.sum()), "zero_activation_fraction":
                     float(h[:, (1 << (cfg.bits - 1)) if cfg.signed else 0].sum() / max(1, int(h.sum())))}
              for name, h in rec.histograms.items()}
    result = {"run_dir": str(rdir), "model": cfg.model, "dataset": cfg.dataset, "stage": "stats",
              "bits": cfg.bits, "signed": cfg.signed, "accuracy": ev["accuracy"],
              "operand_stats": str(path), "layers": layers}
    write_json(rdir / "result.json", result)
    return result


def find_checkpoint(cfg: RunConfig, env: RunEnv) -> Path:
    """The best checkpoint of a finished or interrupted run of ``cfg``."""
    path = env.runs_dir / run_name(cfg) / "best.pt"
    if not path.is_file():
        raise ConfigError(f"no checkpoint for this {cfg.stage.value} run at '{path}'; create it with: "
                          f"{remake_command(cfg, cfg.stage)}" + (f" --lut {cfg.lut}" if cfg.lut else ""))
    return path


def evaluate_checkpoint(cfg: RunConfig, env: RunEnv, data: ImageDataset | None = None) -> dict:
    """Accuracy of a saved stage checkpoint, without changing it (no calibration)."""
    path = find_checkpoint(cfg, env)
    ck = load_checkpoint(path, remake=remake_command(cfg, cfg.stage))
    lut = load_run_lut(cfg) if cfg.stage is Stage.APPROXIMATE else None
    if lut is not None and ck["meta"].get("lut_sha256") not in (None, lut.sha256):
        raise LUTError(f"checkpoint '{path}' was made with LUT {ck['meta'].get('lut_name')} "
                       f"(sha256 {ck['meta']['lut_sha256'][:8]}) but {lut.name} ({lut.short_hash}) was given")
    data = data if data is not None else load_data(cfg, env)
    model = create_model(cfg.model, num_classes=data.num_classes, in_channels=data.image_shape[0]).to(data.device)
    if cfg.stage is not Stage.EXACT:
        mode = Mode.APPROXIMATE if cfg.stage is Stage.APPROXIMATE else Mode.QUANTIZED
        convert_(model, conversion_plan(cfg, mode, lut, env.backend))
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"checkpoint '{path}' does not fit model {cfg.model}: {str(exc).splitlines()[0]}") from None
    ev = evaluate(model, data, progress=env.progress)
    return {"checkpoint": str(path), "accuracy": ev["accuracy"], "loss": ev["loss"], "epoch": ck.get("epoch")}
