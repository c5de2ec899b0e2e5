"""Checkpoints: atomic writes, ``weights_only=True`` loads, clear errors for corrupt files.

A checkpoint is a dict of tensors and plain values only: ``state_dict`` (weights, BatchNorm
statistics, activation observers), ``meta`` (model, dataset, stage, bits, signed, LUT name and
sha256, axcnn and torch versions) and, for resumable ``last.pt`` files, ``optimizer``,
``scheduler``, ``epoch``, ``best`` and RNG states.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_path
from .. import __version__
from ..errors import DataError

FORMAT = "axcnn-checkpoint/1"


def checkpoint_meta(**fields: Any) -> dict[str, Any]:
    return {"format": FORMAT, "axcnn_version": __version__, "torch_version": str(torch.__version__),
            **fields}


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, remake: str = "") -> dict[str, Any]:
    """Load a checkpoint safely; a corrupt or foreign file raises DataError naming ``remake``."""
    path = Path(path)
    hint = f"; delete it and recreate it with: {remake}" if remake else ""
    if not path.is_file():
        raise DataError(f"checkpoint '{path}' does not exist" + (f"; create it with: {remake}" if remake else ""))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise DataError(f"checkpoint '{path}' is corrupt or unreadable "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}){hint}") from None
    if not isinstance(data, dict) or data.get("meta", {}).get("format") != FORMAT:
        raise DataError(f"'{path}' is not an axcnn checkpoint{hint}")
    return data
