"""The explore spec: what to sweep, how to evaluate each candidate, where to run.

A spec is a YAML or JSON mapping (see ``docs/explore.md``)::

    name: lenet-fmnist            # experiment name (the seed CSV's ``file`` suffix)
    model: lenet5
    dataset: fashion_mnist
    bits: 8
    runs_dir: runs                # where 'axcnn train --stage quantized' put its checkpoint
    operands: stats               # uniform | stats | PATH: operand histogram for weighted error/power
    cnn: {retrain: none}          # or false: no CNN evaluation
    hardware: {clock_ns: 10}      # or false: LUT and error metrics only
    sources:
      - {type: builtin, families: [trunc, bam, drum, mitchell]}
      - {type: folder, path: my_luts/}
      - {type: evoapprox, path: ~/evoapproxlib}
      - {type: subxpat, benchmark: mul_i16_o16, args: [--subxpat, ...], grid: {max_error: [4, 8]}}
    executor: {kind: local, workers: 2}

:func:`load_spec` validates everything up front and says which key is wrong. The *settings*
that decide a candidate's result (bits, CNN and hardware settings, checkpoint and histogram
hashes) are hashed into every row key (:func:`settings_digest`); the executor and the sources
are not part of it, so the same candidate evaluated by another executor or found by another
source is the same row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

SPEC_FORMAT = "axcnn-explore-spec/1"
SOURCE_TYPES = ("builtin", "folder", "evoapprox", "subxpat")
EXECUTORS = ("local", "ray")


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_keys(where: str, data: dict, allowed: set[str]) -> None:
    bad = sorted(set(data) - allowed)
    if bad:
        raise ConfigError(f"explore spec: unknown key(s) {bad} in {where}; valid keys: "
                          f"{sorted(allowed)}")


def _type(where: str, value: Any, types: tuple, what: str) -> Any:
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"explore spec: {where} must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"explore spec: {where} must be {what}, got {value!r}")
    return value


@dataclass(frozen=True)
class CnnSettings:
    """How each candidate's CNN accuracy is measured (the approximate stage)."""

    retrain: str = "none"            # none | ste | error_aware
    epochs: int | None = None        # retraining epochs (default: 0 for none, 1 otherwise)
    lr: float | None = None
    batch_size: int | None = None
    calib_batches: int = 32
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 42
    per_channel: bool = False
    keep_first: str | None = None
    include_linear: bool = False
    exact_accuracy: float | None = None
    device: str = "auto"             # not part of the settings hash (backends are bit-identical)
    backend: str = "auto"

    def identity(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("device")
        d.pop("backend")
        d["epochs"] = self.effective_epochs
        return d

    @property
    def effective_epochs(self) -> int:
        if self.epochs is not None:
            return int(self.epochs)
        return 0 if self.retrain == "none" else 1


@dataclass(frozen=True)
class HardwareSettings:
    """How circuits are synthesized, timed and powered (``axcnn.hw.circuit_report``)."""

    liberty: str | None = None       # None: the default (osu018)
    clock_ns: float = 10.0
    vectors: int = 65536
    seed: int = 0
    delay_model: str = "zero"
    power: str = "workload"          # workload | vectorless: which figure is the 'power' column
    timeout_s: float | None = None

    def identity(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("timeout_s")
        d.pop("liberty")             # the liberty's content hash goes in instead
        return d


@dataclass(frozen=True)
class SourceSpec:
    """One candidate source; ``options`` are the type's own keys."""

    type: str
    options: dict = field(default_factory=dict)
    label: str = ""

    def describe(self) -> str:
        return self.label or self.type


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"
    workers: int = 1
    address: str | None = None       # ray: None = a local Ray, else a cluster address
    cpus_per_eda: float = 1.0
    cpus_per_cnn: float = 1.0
    gpus_per_cnn: float = 0.0


@dataclass(frozen=True)
class ExploreSpec:
    """A whole exploration; see the module docstring for the file format."""

    name: str
    model: str = "lenet5"
    dataset: str | None = None
    data_dir: str | None = None
    bits: int = 8
    signed: bool = False
    runs_dir: str = "runs"
    operands: str = "uniform"
    cnn: CnnSettings | None = field(default_factory=CnnSettings)
    hardware: HardwareSettings | None = field(default_factory=HardwareSettings)
    sources: tuple[SourceSpec, ...] = ()
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    max_attempts: int = 2
    base_dir: str = "."              # relative paths in the spec are relative to this

    # ------------------------------------------------------------------ paths
    def path(self, value: str | os.PathLike | None) -> Path | None:
        """A spec path resolved against the spec file's folder (``~`` and $VARS expanded)."""
        if value is None:
            return None
        p = Path(os.path.expandvars(os.path.expanduser(str(value))))
        return p if p.is_absolute() else (Path(self.base_dir) / p)

    @property
    def model_name(self) -> str:
        from ..models import resolve_model_name

        return resolve_model_name(self.model)

    @property
    def dataset_name(self) -> str:
        if self.dataset:
            return self.dataset
        from ..models.registry import model_info

        return model_info(self.model_name).default_dataset

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["format"] = SPEC_FORMAT
        d["sources"] = [{"type": s.type, **({"label": s.label} if s.label else {}), **s.options}
                        for s in self.sources]
        d["cnn"] = dataclasses.asdict(self.cnn) if self.cnn else False
        d["hardware"] = dataclasses.asdict(self.hardware) if self.hardware else False
        return d

    def with_executor(self, **changes: Any) -> "ExploreSpec":
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        ex = dataclasses.replace(self.executor, **changes)
        _check_executor(ex)
        return dataclasses.replace(self, executor=ex)


def _parse_cnn(value: Any) -> CnnSettings | None:
    if value in (False, None):
        return None
    if value is True:
        return CnnSettings()
    _type("cnn", value, (dict,), "a mapping or false")
    fields = {f.name for f in dataclasses.fields(CnnSettings)}
    _check_keys("cnn", value, fields)
    v = dict(value)
    if "retrain" in v:
        v["retrain"] = str(v["retrain"]).lower().replace("-", "_")
        if v["retrain"] not in ("none", "ste", "error_aware"):
            raise ConfigError(f"explore spec: cnn.retrain must be none, ste or error_aware, got "
                              f"{value['retrain']!r}")
    for k in ("epochs", "batch_size", "calib_batches", "train_subset", "test_subset", "seed"):
        if v.get(k) is not None:
            _type(f"cnn.{k}", v[k], (int,), "an integer")
            if v[k] < 0:
                raise ConfigError(f"explore spec: cnn.{k} must be >= 0, got {v[k]}")
    if v.get("keep_first") not in (None, "quantized", "exact"):
        raise ConfigError("explore spec: cnn.keep_first must be quantized or exact")
    return CnnSettings(**v)


def _parse_hardware(value: Any) -> HardwareSettings | None:
    if value in (False, None):
        return None
    if value is True:
        return HardwareSettings()
    _type("hardware", value, (dict,), "a mapping or false")
    _check_keys("hardware", value, {f.name for f in dataclasses.fields(HardwareSettings)})
    hw = HardwareSettings(**value)
    if hw.power not in ("workload", "vectorless"):
        raise ConfigError(f"explore spec: hardware.power must be workload or vectorless, got "
                          f"{hw.power!r}")
    if hw.delay_model not in ("zero", "unit"):
        raise ConfigError("explore spec: hardware.delay_model must be zero or unit")
    if not hw.clock_ns > 0 or hw.vectors < 2:
        raise ConfigError("explore spec: hardware.clock_ns must be > 0 and vectors >= 2")
    return hw


_SOURCE_KEYS = {
    "builtin": {"families", "names", "bits", "signed"},
    "folder": {"path", "signed", "ports", "pattern", "top"},
    "evoapprox": {"path", "lut_from", "pattern", "folders", "limit"},
    "subxpat": {"dir", "python", "benchmark", "args", "grid", "wall_budget_s", "solver_timeout_s",
                "poll_s"},
}


def _parse_source(i: int, raw: Any) -> SourceSpec:
    where = f"sources[{i}]"
    _type(where, raw, (dict,), "a mapping with a 'type'")
    kind = raw.get("type")
    if kind not in SOURCE_TYPES:
        raise ConfigError(f"explore spec: {where}.type must be one of {', '.join(SOURCE_TYPES)}, "
                          f"got {kind!r}")
    opts = {k: v for k, v in raw.items() if k not in ("type", "label")}
    _check_keys(f"{where} ({kind})", opts, _SOURCE_KEYS[kind])
    if kind in ("folder", "evoapprox") and not opts.get("path"):
        raise ConfigError(f"explore spec: {where} ({kind}) needs 'path'")
    if kind == "subxpat":
        if not opts.get("benchmark"):
            raise ConfigError(f"explore spec: {where} (subxpat) needs 'benchmark', e.g. "
                              "mul_i16_o16 (an input/ver name) or a Verilog file")
        if "args" in opts and not isinstance(opts["args"], (list, tuple)):
            raise ConfigError(f"explore spec: {where}.args must be a list of SubXPAT arguments")
        if "grid" in opts and not isinstance(opts["grid"], dict):
            raise ConfigError(f"explore spec: {where}.grid must map SubXPAT options to lists")
    if kind == "evoapprox" and opts.get("lut_from", "c") not in ("c", "verilog"):
        raise ConfigError(f"explore spec: {where}.lut_from must be c or verilog")
    return SourceSpec(kind, opts, str(raw.get("label") or ""))


def _check_executor(ex: ExecutorSettings) -> None:
    if ex.kind not in EXECUTORS:
        raise ConfigError(f"explore spec: executor.kind must be local or ray, got {ex.kind!r}")
    if not isinstance(ex.workers, int) or ex.workers < 1:
        raise ConfigError(f"explore spec: executor.workers must be an integer >= 1, got {ex.workers!r}")


def spec_from_dict(data: dict, base_dir: str | os.PathLike | None = None) -> ExploreSpec:
    """Validate a spec mapping; relative paths are taken relative to ``base_dir`` (default:
    the mapping's own ``base_dir``, else the current folder)."""
    _type("the spec", data, (dict,), "a mapping")
    saved_base = data.get("base_dir")
    data = {k: v for k, v in data.items() if k not in ("format", "base_dir")}
    base_dir = base_dir if base_dir is not None else (saved_base or ".")
    allowed = {f.name for f in dataclasses.fields(ExploreSpec)} - {"base_dir"}
    _check_keys("the spec", data, allowed)
    if not data.get("name"):
        raise ConfigError("explore spec: 'name' (the experiment name) is required")
    if not isinstance(data["name"], str) or any(c in data["name"] for c in "/\\ "):
        raise ConfigError(f"explore spec: name must be a word without spaces or slashes, got "
                          f"{data['name']!r}")
    bits = data.get("bits", 8)
    _type("bits", bits, (int,), "an integer")
    if not 2 <= bits <= 8:
        raise ConfigError(f"explore spec: bits must be 2..8, got {bits}")
    srcs = data.get("sources") or []
    _type("sources", srcs, (list, tuple), "a list")
    if not srcs:
        raise ConfigError("explore spec: 'sources' is empty; add e.g. {type: builtin}")
    ex_raw = data.get("executor") or {}
    _type("executor", ex_raw, (dict,), "a mapping")
    _check_keys("executor", ex_raw, {f.name for f in dataclasses.fields(ExecutorSettings)})
    ex = ExecutorSettings(**ex_raw)
    _check_executor(ex)
    max_attempts = data.get("max_attempts", 2)
    _type("max_attempts", max_attempts, (int,), "an integer")
    if max_attempts < 1:
        raise ConfigError("explore spec: max_attempts must be >= 1")
    operands = str(data.get("operands", "uniform"))
    spec = ExploreSpec(
        name=data["name"], model=str(data.get("model", "lenet5")),
        dataset=data.get("dataset"), data_dir=data.get("data_dir"), bits=bits,
        signed=bool(data.get("signed", False)), runs_dir=str(data.get("runs_dir", "runs")),
        operands=operands, cnn=_parse_cnn(data.get("cnn", True)),
        hardware=_parse_hardware(data.get("hardware", True)),
        sources=tuple(_parse_source(i, s) for i, s in enumerate(srcs)),
        executor=ex, max_attempts=max_attempts, base_dir=str(Path(base_dir).resolve()),
    )
    if spec.cnn is None and spec.hardware is None:
        # still useful: LUTs and error metrics only
        pass
    return spec


def load_spec(path: str | os.PathLike) -> ExploreSpec:
    """Read a YAML (or JSON) spec file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"explore spec '{p}' does not exist; write one (see docs/explore.md)")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"explore spec '{p}' is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"explore spec '{p}' must hold a mapping (name, model, sources, ...)")
    base = data.pop("base_dir", None) or p.resolve().parent
    return spec_from_dict(data, base_dir=base)


def settings_digest(eda: dict, cnn: dict | None) -> str:
    """The hash of every setting that decides a row's values."""
    return _digest({"eda": eda, "cnn": cnn})


def digest(obj: Any) -> str:
    return _digest(obj)
