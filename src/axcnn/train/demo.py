"""The main job of ``make demo``: LeNet-5 through exact -> 8-bit quantized -> approximate.

Short training (a few epochs instead of the seed's 20) so that it finishes in minutes on two
CPU cores; the output says so. Approximate rows use built-in multipliers of increasing error
and one LUT file written in the seed's ``.npy`` format and read back through the file loader,
without retraining, plus STE and error-aware retraining for one multiplier.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from ..config import Retrain, Stage, resolve_config
from ..data import load_dataset
from ..errors import DataError
from ..lut import builtin, load_lut, lut_metrics, save_lut
from .pipeline import RunEnv, load_data, run_stage

log = logging.getLogger("axcnn.demo")

BUILTINS = ("builtin:trunc6", "builtin:mitchell", "builtin:drum4")
NPY_LUT = "trunc10"  # written as a seed-format .npy file
RETRAIN_LUT = "builtin:drum4"


@dataclass(frozen=True)
class DemoOptions:
    exact_epochs: int = 6
    quant_epochs: int = 1
    retrain_epochs: int = 1
    dataset: str = "auto"


def pick_dataset(env: RunEnv, requested: str) -> str:
    """MNIST when its files are here, else Fashion-MNIST (Debian's package), else download MNIST."""
    if requested != "auto":
        return requested
    for name in ("mnist", "fashion_mnist"):
        try:
            load_dataset(name, env.data_dir)
            return name
        except DataError:
            continue
    return "mnist"  # not found locally: load_data downloads it when --download is given


def run_demo(env: RunEnv, opts: DemoOptions = DemoOptions()) -> dict:
    t0 = time.perf_counter()
    dataset = pick_dataset(env, opts.dataset)
    log.info("demo: LeNet-5 on %s; short training (%d exact epochs, %d quantized, %d retraining) "
             "instead of the seed's 20 epochs", dataset, opts.exact_epochs, opts.quant_epochs,
             opts.retrain_epochs)
    lut_dir = env.runs_dir / "luts"
    npy_path = save_lut(builtin(NPY_LUT, 8, False), lut_dir / f"{NPY_LUT}_8u.npy")
    npy_lut = load_lut(npy_path)  # read back through the seed-format loader
    exact = resolve_config("lenet5", dataset, Stage.EXACT, optim_overrides={"epochs": opts.exact_epochs})
    data = load_data(exact, env)
    rows = []

    def row(stage, multiplier, lut, result, retrain="-"):
        m = lut_metrics(lut) if lut is not None else None
        rows.append({"stage": stage, "multiplier": multiplier, "retraining": retrain,
                     "mae": m["mae"] if m else None, "bias": m["bias"] if m else None,
                     "accuracy": result["accuracy"], "run_dir": result["run_dir"]})

    row("exact", "float", None, run_stage(exact, env, data))
    quant = resolve_config("lenet5", dataset, Stage.QUANTIZED, optim_overrides={"epochs": opts.quant_epochs})
    row("quantized 8-bit", "exact", builtin("exact", 8, False), run_stage(quant, env, data))
    for src in (*BUILTINS, str(npy_path)):
        cfg = resolve_config("lenet5", dataset, Stage.APPROXIMATE, lut=src, retrain=Retrain.NONE)
        lut = builtin(src, 8, False) if src.startswith("builtin:") else npy_lut
        name = src if src.startswith("builtin:") else f"{npy_path.name} (.npy file)"
        row("approximate", name, lut, run_stage(cfg, env, data))
        print(f"FINAL_ACCURACY:{rows[-1]['accuracy']}", flush=True)
    for rule in (Retrain.STE, Retrain.ERROR_AWARE):
        cfg = resolve_config("lenet5", dataset, Stage.APPROXIMATE, lut=RETRAIN_LUT, retrain=rule,
                             optim_overrides={"epochs": opts.retrain_epochs})
        res = run_stage(cfg, env, data)
        row("approximate", RETRAIN_LUT, builtin(RETRAIN_LUT, 8, False), res,
            f"{rule.value}, {opts.retrain_epochs} epoch")
        print(f"FINAL_ACCURACY:{res['accuracy']}", flush=True)
    summary = {"model": "lenet5", "dataset": dataset, "rows": rows, "seconds": time.perf_counter() - t0,
               "note": f"short training: {opts.exact_epochs} exact epochs, {opts.quant_epochs} quantized "
                       f"fine-tuning epoch(s), {opts.retrain_epochs} retraining epoch(s)"}
    (env.runs_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (env.runs_dir / "summary.md").write_text(format_table(summary) + "\n")
    return summary


def format_table(summary: dict) -> str:
    lines = [f"LeNet-5 on {summary['dataset']} ({summary['note']})", "",
             "| stage | multiplier | MAE | bias | retraining | accuracy (%) |",
             "|---|---|---:|---:|---|---:|"]
    for r in summary["rows"]:
        mae = "-" if r["mae"] is None else f"{r['mae']:.1f}"
        bias = "-" if r["bias"] is None else f"{r['bias']:+.1f}"
        lines.append(f"| {r['stage']} | {r['multiplier']} | {mae} | {bias} | {r['retraining']} "
                     f"| {r['accuracy']:.2f} |")
    lines += ["", "MAE and bias: mean |error| and mean error of the multiplier over all 8-bit operand pairs; "
              "a biased multiplier shifts every output the same way, which hurts more than its MAE suggests."]
    return "\n".join(lines)
