"""Training, evaluation, checkpoints and the staged pipeline."""

from .checkpoint import load_checkpoint, save_checkpoint
from .loop import evaluate, make_optimizer, predict, train_epoch
from .pipeline import (RunEnv, build_model, evaluate_checkpoint, find_checkpoint, load_data,
                       load_run_lut, run_name, run_stage)

__all__ = [
    "load_checkpoint", "save_checkpoint", "evaluate", "make_optimizer", "predict", "train_epoch",
    "RunEnv", "build_model", "evaluate_checkpoint", "find_checkpoint", "load_data",
    "load_run_lut", "run_name", "run_stage",
]
