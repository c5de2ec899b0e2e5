"""The stages of one model to analyse: finding their runs, training missing ones, loading them.

A *stage* here is one finished (or interrupted) run directory of the staged pipeline: ``exact``,
``quantized-<bits>`` or one ``approximate-<bits>-<lut>-<hash>-<retrain>`` per LUT. Its model is
rebuilt from the run's own ``config.json`` and loaded from ``best.pt`` with the observer state
saved in it: no calibration, eval mode, gradients off, so analysing a checkpoint never changes
it (the seed re-calibrated in train mode before every analysis).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import Retrain, RunConfig, Stage, resolve_config
from ..errors import ConfigError, DataError, LUTError
from ..lut import MultiplierLUT, load_lut

log = logging.getLogger("axcnn.analysis")

STAGE_ORDER = ("exact", "quantized", "approximate")


@dataclass
class StageRun:
    """One stage's run: its tag in artefacts, its config, its checkpoint and LUT."""

    tag: str
    stage: Stage
    cfg: RunConfig
    run_dir: Path
    lut: MultiplierLUT | None = None
    result: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    def describe(self) -> dict:
        d = {"tag": self.tag, "stage": self.stage.value, "run_dir": str(self.run_dir),
             "bits": self.cfg.bits, "signed": self.cfg.signed, "retrain": self.cfg.retrain.value,
             "accuracy": self.result.get("accuracy")}
        if self.lut is not None:
            d["lut"] = {"name": self.lut.name, "sha256": self.lut.sha256, "bits": self.lut.bits_label}
        return d


@dataclass(frozen=True)
class StageQuery:
    """Which stages of which model to analyse, and how to train missing ones."""

    model: str
    dataset: str
    stages: tuple[str, ...] = STAGE_ORDER
    bits: int = 8
    signed: bool = False
    per_channel: bool = False
    luts: tuple[str, ...] = ()
    retrain: Retrain | None = None      # None: any existing approximate run of each LUT
    seed: int | None = None
    train_if_missing: bool = False
    train_epochs: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in STAGE_ORDER]
        if bad or not self.stages:
            raise ConfigError(f"unknown stage(s) {bad or '(none)'}; expected some of {', '.join(STAGE_ORDER)}")


def _bits_label(bits: int, signed: bool, per_channel: bool) -> str:
    return f"{bits}{'s' if signed else 'u'}" + ("-pc" if per_channel else "")


def _command(q: StageQuery, stage: str, runs_dir: Path, lut: str | None = None) -> str:
    cmd = f"axcnn train --model {q.model} --dataset {q.dataset} --stage {stage}"
    if stage != "exact":
        cmd += f" --bits {q.bits}" + (" --signed" if q.signed else "") + (" --per-channel" if q.per_channel else "")
    if lut:
        cmd += f" --lut {lut}"
        if q.retrain is Retrain.NONE:
            cmd += " --no_retraining"
        elif q.retrain is not None:
            cmd += f" --retrain {q.retrain.value.replace('_', '-')}"
    return cmd + f" --runs-dir {runs_dir}"


def _config(q: StageQuery, stage: Stage, lut: str | None = None) -> RunConfig:
    retrain = Retrain.NONE
    if stage is Stage.APPROXIMATE:
        retrain = q.retrain if q.retrain is not None else Retrain.STE
    no_training = stage is Stage.APPROXIMATE and retrain is Retrain.NONE
    return resolve_config(q.model, q.dataset, stage, bits=q.bits, retrain=retrain,
                          optim_overrides={"epochs": None if no_training else q.train_epochs},
                          signed=q.signed or None, per_channel=q.per_channel or None, lut=lut,
                          seed=q.seed, train_subset=q.train_subset, test_subset=q.test_subset)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _run_config(run_dir: Path) -> RunConfig | None:
    d = _read_json(run_dir / "config.json")
    try:
        return RunConfig.from_dict(d) if d else None
    except Exception:  # a config from another version: not ours to analyse
        return None


def _train(cfg: RunConfig, env) -> None:
    from ..train import run_stage

    log.info("training the missing %s stage (--train-if-missing)", cfg.stage.value)
    run_stage(cfg, env)


def _fixed_stage(q: StageQuery, stage: Stage, env) -> StageRun:
    from ..train import run_name

    cfg = _config(q, stage)
    run_dir = env.runs_dir / run_name(cfg)
    if not (run_dir / "best.pt").is_file():
        if not q.train_if_missing:
            raise ConfigError(f"no {stage.value} checkpoint at '{run_dir / 'best.pt'}'; create it with: "
                              f"{_command(q, stage.value, env.runs_dir)} (or pass --train-if-missing)")
        _train(cfg, env)
    saved = _run_config(run_dir) or cfg
    return StageRun(stage.value, stage, saved, run_dir, None, _read_json(run_dir / "result.json"))


def _approximate_runs(q: StageQuery, env) -> list[tuple[Path, RunConfig]]:
    base = env.runs_dir / f"{q.model}-{q.dataset}"
    prefix = f"approximate-{_bits_label(q.bits, q.signed, q.per_channel)}-"
    found = []
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if not d.name.startswith(prefix) or not (d / "best.pt").is_file():
                continue
            cfg = _run_config(d)
            if cfg is None or cfg.stage is not Stage.APPROXIMATE or cfg.bits != q.bits \
                    or cfg.signed != q.signed or cfg.per_channel != q.per_channel:
                continue
            if q.retrain is not None and cfg.retrain is not q.retrain:
                continue
            found.append((d, cfg))
    return found


def _load_run_lut(cfg: RunConfig, run_dir: Path) -> MultiplierLUT:
    try:
        return load_lut(cfg.lut, signed=cfg.signed, bits=cfg.bits)
    except LUTError as exc:
        raise ConfigError(f"approximate run '{run_dir}' was made with LUT '{cfg.lut}', which cannot "
                          f"be loaded from here ({exc}); pass it with --lut PATH") from None


def _approximate_stages(q: StageQuery, env) -> list[StageRun]:
    runs = _approximate_runs(q, env)
    picked: list[tuple[Path, RunConfig, MultiplierLUT]] = []
    if q.luts:
        for src in q.luts:
            lut = load_lut(src, signed=q.signed, bits=q.bits)
            mine = [(d, c) for d, c in runs if f"-{lut.short_hash}-" in d.name]
            if not mine:
                if not q.train_if_missing:
                    raise ConfigError(f"no approximate run of LUT {lut.name} ({lut.short_hash}) at "
                                      f"{_bits_label(q.bits, q.signed, q.per_channel)} under "
                                      f"'{env.runs_dir / f'{q.model}-{q.dataset}'}'; create it with: "
                                      f"{_command(q, 'approximate', env.runs_dir, src)} (or pass --train-if-missing)")
                cfg = _config(q, Stage.APPROXIMATE, src)
                _train(cfg, env)
                from ..train import run_name
                mine = [(env.runs_dir / run_name(cfg, lut), cfg)]
            picked += [(d, c, lut) for d, c in mine]
    else:
        if not runs:
            raise ConfigError(f"no approximate run at {_bits_label(q.bits, q.signed, q.per_channel)} under "
                              f"'{env.runs_dir / f'{q.model}-{q.dataset}'}'; create one with: "
                              f"{_command(q, 'approximate', env.runs_dir, 'builtin:NAME|FILE')} "
                              "(or give --lut with --train-if-missing)")
        picked = [(d, c, _load_run_lut(c, d)) for d, c in runs]
    out = [StageRun(f"approximate_{lut.name}", Stage.APPROXIMATE, cfg, d, lut, _read_json(d / "result.json"))
           for d, cfg, lut in picked]
    for refine in (lambda s: f"{s.tag}_{s.cfg.retrain.value}",
                   lambda s: "approximate_" + s.run_dir.name.split("-", 2)[-1]):
        tags = [s.tag for s in out]
        for s in out:
            if tags.count(s.tag) > 1:
                s.tag = refine(s)
    return out


def find_stages(q: StageQuery, env) -> list[StageRun]:
    """The runs of the requested stages, in exact -> quantized -> approximate order.

    A missing run raises ConfigError naming the command that makes it, unless
    ``q.train_if_missing``, in which case it (and what it builds on) is trained first.
    """
    out: list[StageRun] = []
    need_q = "quantized" in q.stages or ("approximate" in q.stages and q.train_if_missing)
    if "exact" in q.stages or (need_q and q.train_if_missing):
        ex = _fixed_stage(q, Stage.EXACT, env)
        if "exact" in q.stages:
            out.append(ex)
    if need_q:
        qu = _fixed_stage(q, Stage.QUANTIZED, env)
        if "quantized" in q.stages:
            out.append(qu)
    if "approximate" in q.stages:
        out += _approximate_stages(q, env)
    return out


def load_stage_model(st: StageRun, num_classes: int, in_channels: int, device: str | torch.device = "cpu",
                     backend=None) -> nn.Module:
    """The stage's model with its saved weights and observers: eval mode, no gradients.

    Nothing is calibrated or re-estimated; the checkpoint's identity (model, stage, LUT sha256)
    is checked against what the run says it is.
    """
    from ..models import create_model
    from ..nn import Mode, convert_
    from ..ops import Backend
    from ..train.checkpoint import load_checkpoint
    from ..train.pipeline import conversion_plan

    cfg = st.cfg
    ck = load_checkpoint(st.checkpoint, remake=f"axcnn train --model {cfg.model} --dataset {cfg.dataset} "
                                              f"--stage {cfg.stage.value} --force")
    meta = ck.get("meta", {})
    if meta.get("model") not in (None, cfg.model) or meta.get("stage") not in (None, st.stage.value):
        raise DataError(f"checkpoint '{st.checkpoint}' holds {meta.get('model')}/{meta.get('stage')}, "
                        f"not {cfg.model}/{st.stage.value}")
    if st.lut is not None and meta.get("lut_sha256") not in (None, st.lut.sha256):
        raise LUTError(f"checkpoint '{st.checkpoint}' was made with LUT {meta.get('lut_name')} "
                       f"({str(meta.get('lut_sha256'))[:8]}) but {st.lut.name} ({st.lut.short_hash}) was given")
    model = create_model(cfg.model, num_classes=num_classes, in_channels=in_channels)
    if st.stage is not Stage.EXACT:
        mode = Mode.APPROXIMATE if st.stage is Stage.APPROXIMATE else Mode.QUANTIZED
        convert_(model, conversion_plan(cfg, mode, st.lut, backend or Backend.AUTO))
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"checkpoint '{st.checkpoint}' does not fit model {cfg.model}: "
                        f"{str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    model.requires_grad_(False)
    return model
