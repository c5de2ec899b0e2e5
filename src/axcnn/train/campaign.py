"""Campaigns: a plan of stages and LUTs run in time-boxed chunks, and the tables they produce.

A plan (YAML) names one model and dataset, optional per-stage optimiser overrides, the LUTs
and the retraining rules::

    model: resnet20
    dataset: cifar10
    bits: 8
    exact: {epochs: 200}
    quantized: {epochs: 5}
    approximate: {epochs: 3}
    retrain: [none, ste, error_aware]
    reference_power: 0.391            # optional: the exact multiplier's power, for relative power
    title: ResNet-20, CIFAR-10        # optional: the title of ``campaign table --figure``
    luts:
      - builtin:trunc6
      - {source: ../shared/data/evoapprox8_luts.npz:mul8s_1L2N, signed: true, relative_power: 0.296}

``run_campaign`` walks the plan in order (exact, quantized per signedness, then every LUT and
retraining rule), resuming each run where it stopped, until the plan is done or the time
budget ends (an unfinished campaign returns ``complete = False``; rerun to continue).
``shard=(k, n)`` runs only the approximate runs of every n-th LUT, from the k-th (1-based), so n
processes share the approximate runs of one plan (on one GPU, whose small layers leave it idle
between kernel launches, or on several); the exact and quantized stages must be finished first.
``campaign_table`` turns the finished runs into one Markdown table plus JSON rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Retrain, Stage, resolve_config
from ..errors import ConfigError
from ..lut import lut_metrics
from .pipeline import RunEnv, load_data, load_run_lut, run_stage

log = logging.getLogger("axcnn.campaign")

#: column heads of the retraining rules in tables and figures
RETRAIN_LABELS = {"none": "no retraining", "ste": "STE", "error_aware": "error-aware"}


@dataclass(frozen=True)
class PlanLUT:
    source: str
    signed: bool = False
    power: float | None = None
    relative_power: float | None = None   # overrides power / reference_power
    label: str | None = None


@dataclass(frozen=True)
class Plan:
    model: str
    dataset: str
    bits: int = 8
    luts: tuple[PlanLUT, ...] = ()
    retrain: tuple[Retrain, ...] = (Retrain.NONE, Retrain.STE, Retrain.ERROR_AWARE)
    stage_optim: dict[str, dict] = field(default_factory=dict)
    reference_power: float | None = None
    options: dict[str, Any] = field(default_factory=dict)   # other RunConfig fields (seed, window, ...)
    title: str | None = None          # figure title, e.g. "ResNet-20, CIFAR-10 (JPEG q75)"


def load_plan(path: str | Path) -> Plan:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"campaign plan '{p}' does not exist")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"campaign plan '{p}' is not valid YAML: {exc}") from None
    if not isinstance(d, dict) or "model" not in d or "dataset" not in d:
        raise ConfigError(f"campaign plan '{p}' must be a mapping with at least 'model' and 'dataset'")
    luts = []
    for item in d.pop("luts", []) or []:
        if isinstance(item, str):
            item = {"source": item}
        if not isinstance(item, dict) or "source" not in item:
            raise ConfigError(f"campaign plan '{p}': each LUT is a string or a mapping with 'source'")
        bad = set(item) - {"source", "signed", "power", "relative_power", "label"}
        if bad:
            raise ConfigError(f"campaign plan '{p}': unknown LUT key(s) {sorted(bad)}")
        luts.append(PlanLUT(**item))
    stage_optim = {s: dict(d.pop(s) or {}) for s in ("exact", "quantized", "approximate") if s in d}
    retrain = tuple(Retrain.parse(r) for r in d.pop("retrain", ["none", "ste", "error_aware"]))
    return Plan(model=d.pop("model"), dataset=d.pop("dataset"), bits=int(d.pop("bits", 8)),
                luts=tuple(luts), retrain=retrain, stage_optim=stage_optim,
                reference_power=d.pop("reference_power", None), title=d.pop("title", None), options=d)


def plan_configs(plan: Plan):
    """Every RunConfig of the plan, in execution order, with the PlanLUT of approximate runs."""
    common = dict(bits=plan.bits, **plan.options)
    out = [(resolve_config(plan.model, plan.dataset, Stage.EXACT,
                           optim_overrides=plan.stage_optim.get("exact"), **common), None)]
    for signed in sorted({lut.signed for lut in plan.luts} or {False}):
        out.append((resolve_config(plan.model, plan.dataset, Stage.QUANTIZED, signed=signed or None,
                                   optim_overrides=plan.stage_optim.get("quantized"), **common), None))
    for lut in plan.luts:
        for rule in plan.retrain:
            cfg = resolve_config(plan.model, plan.dataset, Stage.APPROXIMATE, lut=lut.source,
                                 signed=lut.signed or None, retrain=rule,
                                 optim_overrides=plan.stage_optim.get("approximate"), **common)
            out.append((cfg, lut))
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like K/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def run_campaign(plan: Plan, env: RunEnv, *, prune: bool = False,
                 shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run the plan (or one shard of its approximate runs) until done or ``env.deadline``."""
    configs = plan_configs(plan)
    if shard is not None:
        from .pipeline import run_name

        k, n = shard
        missing = [run_name(c) for c, _ in configs if c.stage is not Stage.APPROXIMATE
                   and not (env.runs_dir / run_name(c) / "result.json").is_file()]
        if missing:
            raise ConfigError(f"--shard runs only approximate stages, and {missing[0]} is not finished; "
                              f"run 'axcnn campaign run PLAN' without --shard first")
        sources = list(dict.fromkeys(lut.source for lut in plan.luts))
        mine = set(sources[k - 1::n])   # whole LUTs, so every shard gets each retraining rule
        configs = [c for c in configs if c[0].stage is Stage.APPROXIMATE and c[1].source in mine]
    for cfg, _ in configs:  # validate every LUT before the first long run
        if cfg.lut:
            load_run_lut(cfg)
    data = None
    done = 0
    t0 = time.perf_counter()
    for i, (cfg, _) in enumerate(configs, 1):
        if data is None:
            data = load_data(cfg, env)
        result = run_stage(cfg, env, data)
        if result.get("incomplete"):
            log.warning("campaign: time budget reached at run %d/%d (%s)", i, len(configs), result["run_dir"])
            return {"complete": False, "finished": done, "total": len(configs),
                    "seconds": time.perf_counter() - t0}
        done += 1
        if prune:
            last = Path(result["run_dir"]) / "last.pt"
            if last.is_file():
                last.unlink()
        log.info("campaign: %d/%d done: %s %.2f%%", i, len(configs), result["run_dir"], result["accuracy"])
    return {"complete": True, "finished": done, "total": len(configs), "seconds": time.perf_counter() - t0}


def campaign_table(plan: Plan, env: RunEnv) -> tuple[str, dict[str, Any]]:
    """A Markdown table of the plan's finished runs and the same data as JSON."""
    import json

    from .pipeline import run_name

    def result(cfg):
        path = env.runs_dir / run_name(cfg) / "result.json"
        return json.loads(path.read_text()) if path.is_file() else None

    configs = plan_configs(plan)
    refs, rows = [], {}
    for cfg, lut in configs:
        res = result(cfg)
        if cfg.stage is not Stage.APPROXIMATE:
            label = "exact (float)" if cfg.stage is Stage.EXACT else f"{cfg.bits}-bit quantized ({'signed' if cfg.signed else 'unsigned'})"
            refs.append({"model": label, "accuracy": res["accuracy"] if res else None,
                         "seconds_per_epoch": res.get("seconds_per_epoch") if res else None,
                         "device": res.get("device") if res else None})
            continue
        key = lut.source
        if key not in rows:
            lt = load_run_lut(cfg)
            m = lut_metrics(lt)
            rel = lut.relative_power
            if rel is None and lut.power and plan.reference_power:
                rel = lut.power / plan.reference_power
            rows[key] = {"multiplier": lut.label or lt.name, "signed": lt.signed, "mae": m["mae"], "wce": m["wce"],
                         "relative_power": rel, "accuracy": {}, "seconds_per_epoch": {}}
        rows[key]["accuracy"][cfg.retrain.value] = res["accuracy"] if res else None
        if res and res.get("seconds_per_epoch"):
            rows[key]["seconds_per_epoch"][cfg.retrain.value] = res["seconds_per_epoch"]
    rules = [r.value for r in plan.retrain]

    def fmt(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    lines = [f"| {plan.model} reference | accuracy (%) | s/epoch | device |", "|---|---:|---:|---|"]
    for r in refs:
        lines.append(f"| {r['model']} | {fmt(r['accuracy'])} | {fmt(r['seconds_per_epoch'], '.1f')} | {r['device'] or '-'} |")
    trained = [r for r in rules if r != Retrain.NONE.value]   # rules with training epochs
    times = (f" s/epoch ({' / '.join(RETRAIN_LABELS[r] for r in trained)}) |" if trained else "")
    lines += ["", "| multiplier | MAE | WCE | rel. power | " + " | ".join(RETRAIN_LABELS[r] for r in rules)
              + " |" + times, "|---|---:|---:|---:|" + "---:|" * len(rules) + ("---:|" if trained else "")]
    for row in rows.values():
        accs = " | ".join(fmt(row["accuracy"].get(r)) for r in rules)
        secs = (" " + " / ".join(fmt(row["seconds_per_epoch"].get(r), ".1f") for r in trained) + " |"
                if trained else "")
        lines.append(f"| {row['multiplier']} | {row['mae']:.1f} | {row['wce']:.0f} | "
                     f"{fmt(row['relative_power'], '.3f')} | {accs} |{secs}")
    return "\n".join(lines), {"references": refs, "multipliers": list(rows.values())}
