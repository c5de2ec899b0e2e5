"""``axcnn train`` and ``axcnn evaluate``: the staged pipeline from the command line.

The seed's flags are accepted as aliases: ``--model_name``, ``--bit_width``, ``--input_path``
(a LUT file or a directory of ``.npy`` LUTs), ``--no_retraining``, ``--exact_accuracy``,
``--zone`` (= ``--keep-first quantized``) and ``--conv_type 1..5``:
1 exact, 2 quantized, 3 approximate + STE, 4 approximate + error-aware, 5 operand statistics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("axcnn")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--model_name", dest="model", default="lenet5",
                   help="model name (axcnn.models.list_models); default lenet5")
    p.add_argument("--dataset", default=None, help="dataset (default: the model's)")
    p.add_argument("--stage", default=None, choices=["exact", "quantized", "approximate", "stats"])
    p.add_argument("--conv_type", "--conv-type", dest="conv_type", type=int, choices=[1, 2, 3, 4, 5],
                   help="seed alias: 1 exact, 2 quantized, 3 approx+STE, 4 approx+error-aware, 5 stats")
    p.add_argument("--bits", "--bit_width", dest="bits", type=int, default=8)
    p.add_argument("--signed", action="store_true", help="signed symmetric codes and LUTs")
    p.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales")
    p.add_argument("--lut", action="append", default=[], metavar="LUT",
                   help="LUT file (.npy/.npz/.bin) or builtin:NAME; repeat for several runs")
    p.add_argument("--lut-dir", "--input_path", dest="lut_dir", action="append", default=[],
                   metavar="DIR", help="every LUT file in DIR (sorted), or one LUT file")
    p.add_argument("--keep-first", choices=["quantized", "exact"], default=None,
                   help="mode of the first conv in the approximate stage")
    p.add_argument("--zone", action="store_true", help="seed alias of --keep-first quantized")
    p.add_argument("--include-linear", action="store_true", help="quantize/approximate Linear layers too")
    p.add_argument("--post-calibration", "--approx_post_calibration", dest="post_calibration",
                   action="store_true", help="approximate stage: calibrate the activation ranges "
                   "with exact products, then switch to the LUT (the seed's post-calibration)")
    p.add_argument("--bn-calibration", dest="bn_calibration", action="store_true",
                   help="approximate stage: re-estimate the BatchNorm statistics with the LUT in "
                   "place after calibration (no training)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--backend", default="auto", help="auto, torch, reference, triton, decomposed")
    p.add_argument("--train-subset", type=int, default=None, help="use N training images")
    p.add_argument("--test-subset", type=int, default=None, help="use N test images")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", type=Path, default=None, help="YAML file of config differences")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--retrain", choices=["none", "ste", "error-aware"], default=None,
                   help="approximate stage: retraining rule (default ste)")
    p.add_argument("--no_retraining", "--no-retraining", dest="no_retraining", action="store_true")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train one stage (exact, quantized, approximate, stats)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--exact_accuracy", "--exact-accuracy", dest="exact_accuracy", type=float, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=None)
    p.add_argument("--window", type=int, default=None, help="error-aware gradient window (default 2)")
    p.add_argument("--calib-batches", type=int, default=None)
    p.add_argument("--force", action="store_true", help="restart runs that exist")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="start no epoch that would end after this many minutes; rerun to continue "
                        "(exit code 75 while unfinished)")
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="accuracy of a saved stage checkpoint (changes nothing)")
    _common(e)
    e.set_defaults(func=run_evaluate, exact_accuracy=None,
                   epochs=None, batch_size=None, lr=None, optimizer=None, window=None,
                   calib_batches=None, force=False)


def lut_sources(args) -> list[str]:
    from ..errors import ConfigError
    from ..lut.io import SUPPORTED

    sources = list(args.lut)
    for d in args.lut_dir:
        path = Path(d)
        if path.is_file():
            sources.append(str(path))
        elif path.is_dir():
            files = sorted(f for f in path.iterdir() if f.suffix.lower() in SUPPORTED)
            if not files:
                raise ConfigError(f"LUT directory '{path}' has no {'/'.join(SUPPORTED)} files")
            sources += [str(f) for f in files]
        else:
            raise ConfigError(f"LUT path '{path}' does not exist")
    return sources


def build_configs(args):
    """One RunConfig per LUT (or one for LUT-less stages) from parsed arguments."""
    from ..config import CONV_TYPES, Retrain, Stage, load_yaml_overrides, resolve_config
    from ..errors import ConfigError
    from ..models import model_info, resolve_model_name

    model = resolve_model_name(args.model)
    dataset = args.dataset or model_info(model).default_dataset
    retrain = None
    if args.conv_type is not None:
        stage, retrain = CONV_TYPES[args.conv_type]
        if args.stage and Stage.parse(args.stage) is not stage:
            raise ConfigError(f"--conv_type {args.conv_type} means stage {stage.value}, but --stage {args.stage} was given")
    else:
        stage = Stage.parse(args.stage or "exact")
    if stage is Stage.APPROXIMATE:
        if args.retrain:
            retrain = Retrain.parse(args.retrain)
        elif retrain is None:
            retrain = Retrain.STE
        if args.no_retraining:
            retrain = Retrain.NONE
    else:
        retrain = Retrain.NONE
    yaml_over = load_yaml_overrides(args.config) if args.config else None
    keep_first = "quantized" if args.zone else args.keep_first
    optim = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer}
    common = dict(bits=args.bits, retrain=retrain, yaml_overrides=yaml_over, optim_overrides=optim,
                  signed=args.signed or None, per_channel=args.per_channel or None, seed=args.seed,
                  exact_accuracy=args.exact_accuracy, keep_first=keep_first,
                  include_linear=args.include_linear or None, window=args.window,
                  calib_batches=args.calib_batches, train_subset=args.train_subset,
                  test_subset=args.test_subset, post_calibration=args.post_calibration or None,
                  bn_calibration=args.bn_calibration or None)
    luts = lut_sources(args)
    if stage is Stage.APPROXIMATE:
        if not luts:
            raise ConfigError("the approximate stage needs --lut FILE|builtin:NAME or --lut-dir DIR")
        return [resolve_config(model, dataset, stage, lut=lut, **common) for lut in luts]
    if luts:
        raise ConfigError(f"--lut is only used by the approximate stage, not by {stage.value}")
    return [resolve_config(model, dataset, stage, **common)]


def _env(args):
    import time

    from ..ops import Backend
    from ..train import RunEnv
    from ..train.pipeline import resolve_device

    budget = getattr(args, "time_budget", None)
    return RunEnv(runs_dir=args.runs_dir, data_dir=args.data_dir, device=resolve_device(args.device),
                  backend=Backend.parse(args.backend), progress=not args.no_progress,
                  force=args.force, download=args.download,
                  deadline=None if budget is None else time.monotonic() + 60.0 * budget)


def run_train(args) -> int:
    from ..config import Stage
    from ..train import load_data, run_stage

    configs = build_configs(args)
    env = _env(args)
    data = load_data(configs[0], env)
    for cfg in configs:
        if cfg.lut:
            from ..train import load_run_lut
            load_run_lut(cfg)  # validate every LUT before the first long run
    from ..train.pipeline import EXIT_INCOMPLETE

    for cfg in configs:
        result = run_stage(cfg, env, data)
        if result.get("incomplete"):
            print(f"stopped by --time-budget in {result['run_dir']} after epoch {result['epochs']}; "
                  "rerun the same command to continue")
            return EXIT_INCOMPLETE
        print(f"Test Accuracy: {result['accuracy']:.2f}%  ({result['run_dir']})")
        if cfg.stage is Stage.APPROXIMATE:
            print(f"FINAL_ACCURACY:{result['accuracy']}", flush=True)
    return 0


def run_evaluate(args) -> int:
    from ..train import evaluate_checkpoint, load_data

    configs = build_configs(args)
    env = _env(args)
    data = load_data(configs[0], env)
    for cfg in configs:
        res = evaluate_checkpoint(cfg, env, data)
        print(f"Test Accuracy: {res['accuracy']:.2f}%  ({res['checkpoint']})")
    return 0
