"""Run configuration: frozen dataclasses, seed recipes as defaults, YAML files of differences.

A run is fully described by a :class:`RunConfig`. :func:`resolve_config` starts from the
seed's recipe for the model and stage (SEED_SPEC 1.3/1.4), applies a YAML file (which holds only
the keys that differ) and then explicit overrides; the resolved config is saved in every run
directory as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .choices import Choice
from .errors import ConfigError


class Stage(Choice):
    EXACT = "exact"
    QUANTIZED = "quantized"
    APPROXIMATE = "approximate"
    STATS = "stats"


class Retrain(Choice):
    """Retraining of the approximate stage: none, straight-through or error-aware gradients."""

    NONE = "none"
    STE = "ste"
    ERROR_AWARE = "error_aware"

    @classmethod
    def what(cls) -> str:
        return "retraining"


#: the seed's ``--conv_type`` -> (stage, retraining rule); see docs/train.md
CONV_TYPES: dict[int, tuple[Stage, Retrain]] = {
    1: (Stage.EXACT, Retrain.NONE),
    2: (Stage.QUANTIZED, Retrain.NONE),
    3: (Stage.APPROXIMATE, Retrain.STE),
    4: (Stage.APPROXIMATE, Retrain.ERROR_AWARE),
    5: (Stage.STATS, Retrain.NONE),
}


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"          # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"          # step | multistep | none
    step_size: int = 30
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    epochs: int = 100
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("step", "multistep", "none"):
            raise ConfigError(f"schedule must be step, multistep or none, got {self.schedule!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs must be >= 0, batch_size >= 1 and lr > 0")


#: the seed's exact-training recipes (SEED_SPEC 1.4)
EXACT_RECIPES: dict[str, OptimConfig] = {
    "resnet20": OptimConfig("sgd", 0.1, 0.9, 1e-4, "multistep", milestones=(30, 60), epochs=100, batch_size=64),
    "resnet8": OptimConfig("sgd", 0.1, 0.9, 1e-4, "multistep", milestones=(30, 60), epochs=100, batch_size=64),
    "lenet5": OptimConfig("sgd", 0.01, 0.9, 5e-4, "step", step_size=10, gamma=0.5, epochs=20, batch_size=64),
    "vgg16": OptimConfig("sgd", 0.005, 0.9, 5e-3, "step", step_size=30, gamma=0.1, epochs=100, batch_size=128),
    "alexnet_cifar10": OptimConfig("sgd", 0.1, 0.9, 5e-4, "multistep", milestones=(100, 150), epochs=200, batch_size=128),
    "resnet56": OptimConfig("sgd", 0.1, 0.9, 5e-4, "multistep", milestones=(100, 150), epochs=200, batch_size=128),
}
DEFAULT_RECIPE = OptimConfig("sgd", 0.1, 0.9, 1e-4, "step", step_size=30, epochs=100, batch_size=128)


def stage_recipe(model: str, stage: Stage, bits: int, retrain: Retrain) -> OptimConfig:
    """The seed's default optimisation for a model and stage."""
    exact = EXACT_RECIPES.get(model, DEFAULT_RECIPE)
    if stage is Stage.EXACT:
        return exact
    lr = 1e-3 if bits == 4 else 1e-4
    if stage is Stage.QUANTIZED:
        return OptimConfig("adam", lr, 0.0, 0.0, "step", step_size=10, gamma=0.5, epochs=5,
                           batch_size=exact.batch_size)
    epochs = 0 if (stage is Stage.STATS or retrain is Retrain.NONE) else 3
    return OptimConfig("adam", lr, 0.0, 0.0, "step", step_size=10, gamma=0.5, epochs=epochs,
                       batch_size=exact.batch_size)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result."""

    model: str
    dataset: str
    stage: Stage
    bits: int = 8
    signed: bool = False
    per_channel: bool = False
    lut: str | None = None            # LUT source: a file path or builtin:NAME
    retrain: Retrain = Retrain.NONE
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 42
    exact_accuracy: float | None = None   # approximate stage: abort below this - 3 pp
    keep_first: str | None = None     # None | quantized | exact: the first conv's mode
    include_linear: bool = False
    window: int = 2                   # error-aware gradient window
    calib_batches: int = 32
    train_subset: int | None = None
    test_subset: int | None = None
    tag: str | None = None            # approximate runs: a name suffix that keeps another recipe apart
    post_calibration: bool = False    # approximate: observer ranges from exact (quantized) products
    bn_calibration: bool = False      # approximate: re-estimate BatchNorm statistics after calibration

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ConfigError(f"--bits must be 2..8, got {self.bits}")
        if self.stage is Stage.APPROXIMATE and not self.lut:
            raise ConfigError("the approximate stage needs a LUT: --lut FILE|builtin:NAME or --lut-dir DIR")
        if self.keep_first not in (None, "quantized", "exact"):
            raise ConfigError(f"--keep-first must be 'quantized' or 'exact', got {self.keep_first!r}")
        if self.tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.]*", str(self.tag)):
            raise ConfigError(f"tag must be letters, digits, '_' or '.' (it becomes part of a directory "
                              f"name), got {self.tag!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stage"] = self.stage.value
        d["retrain"] = self.retrain.value
        d["optim"]["milestones"] = list(self.optim.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        optim = dict(d.pop("optim", {}))
        optim["milestones"] = tuple(optim.get("milestones", ()))
        return cls(stage=Stage.parse(d.pop("stage")), retrain=Retrain.parse(d.pop("retrain", "none")),
                   optim=OptimConfig(**optim), **d)


def load_yaml_overrides(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of config differences (top-level RunConfig keys; ``optim:`` mapping)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{p}' is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of option: value")
    valid = {f.name for f in dataclasses.fields(RunConfig)}
    bad = sorted(set(data) - valid)
    if bad:
        raise ConfigError(f"config file '{p}' has unknown key(s) {bad}; valid keys: {sorted(valid)}")
    if "optim" in data:
        ovalid = {f.name for f in dataclasses.fields(OptimConfig)}
        obad = sorted(set(data["optim"] or {}) - ovalid)
        if obad:
            raise ConfigError(f"config file '{p}': unknown optim key(s) {obad}; valid: {sorted(ovalid)}")
    return data


def resolve_config(model: str, dataset: str, stage: Stage, *, bits: int = 8,
                   retrain: Retrain = Retrain.NONE, yaml_overrides: dict[str, Any] | None = None,
                   optim_overrides: dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """Recipe defaults <- YAML differences <- explicit overrides (None values are ignored)."""
    values: dict[str, Any] = {}
    optim_over: dict[str, Any] = {}
    for source in (yaml_overrides or {}, ):
        for k, v in source.items():
            if k == "optim":
                optim_over.update(v or {})
            else:
                values[k] = v
    values.update({k: v for k, v in overrides.items() if v is not None})
    optim_over.update({k: v for k, v in (optim_overrides or {}).items() if v is not None})
    valid = {f.name for f in dataclasses.fields(RunConfig)} - {"model", "dataset", "optim"}
    bad = sorted(set(values) - valid)
    obad = sorted(set(optim_over) - {f.name for f in dataclasses.fields(OptimConfig)})
    if bad or obad:
        raise ConfigError(f"unknown configuration key(s) {bad + [f'optim.{k}' for k in obad]}; "
                          f"valid keys: {sorted(valid)} and optim.{{{', '.join(f.name for f in dataclasses.fields(OptimConfig))}}}")
    bits = int(values.pop("bits", bits))
    retrain = Retrain.parse(values.pop("retrain", retrain))
    stage = Stage.parse(values.pop("stage", stage))
    base = stage_recipe(model, stage, bits, retrain)
    if "milestones" in optim_over:
        optim_over["milestones"] = tuple(optim_over["milestones"])
    optim = dataclasses.replace(base, **optim_over)
    if stage is Stage.APPROXIMATE and retrain is Retrain.NONE:
        optim = dataclasses.replace(optim, epochs=0)  # "no retraining" never trains, whatever else says
    if not (stage is Stage.APPROXIMATE and retrain is Retrain.ERROR_AWARE):
        values.pop("window", None)  # the gradient window only matters to error-aware retraining
    if stage is not Stage.APPROXIMATE:
        values.pop("tag", None)     # references are shared by every plan that names them
        values.pop("post_calibration", None)
        values.pop("bn_calibration", None)
    return RunConfig(model=model, dataset=dataset, stage=stage, bits=bits, retrain=retrain,
                     optim=optim, **values)


def config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """Human-readable differences between two configs (for resume checks)."""
    da, db = json.loads(json.dumps(a.to_dict())), json.loads(json.dumps(b.to_dict()))
    out = []
    for k in sorted(set(da) | set(db)):
        if k == "optim":
            for ok in sorted(set(da[k]) | set(db[k])):
                if da[k].get(ok) != db[k].get(ok):
                    out.append(f"optim.{ok}: {da[k].get(ok)!r} vs {db[k].get(ok)!r}")
        elif da.get(k) != db.get(k):
            out.append(f"{k}: {da.get(k)!r} vs {db.get(k)!r}")
    return out
