"""Activation observers: buffers in the state_dict, updated only when asked to.

``ActivationObserver`` keeps an exponential moving average of the batch min/max
(momentum 0.1; the first batch sets the range), as the seed did. It updates while its module
is in training mode (quantization-aware training) or inside :func:`observing` (calibration in
eval mode, which leaves BatchNorm statistics alone); otherwise the stored range is used.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .qparams import qparams_from_range


class ActivationObserver(nn.Module):
    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("min_val", torch.tensor(0.0))
        self.register_buffer("max_val", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.calibrating = False  # set by observing(); plain attribute, not saved

    def reset(self) -> None:
        self.min_val.zero_()
        self.max_val.zero_()
        self.initialized.fill_(False)

    @property
    def updating(self) -> bool:
        return self.training or self.calibrating

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.updating and x.numel() > 0:
            lo, hi = torch.aminmax(x.detach())
            lo, hi = lo.float(), hi.float()
            if bool(self.initialized):
                m = self.momentum
                self.min_val.mul_(1 - m).add_(m * lo)
                self.max_val.mul_(1 - m).add_(m * hi)
            else:
                self.min_val.copy_(lo)
                self.max_val.copy_(hi)
                self.initialized.fill_(True)
        return x

    def qparams(self, bits: int, signed: bool, owner: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        if not bool(self.initialized):
            where = f" of layer '{owner}'" if owner else ""
            raise ConfigError(
                f"the activation observer{where} has no range yet: calibrate the model "
                "(axcnn.quant.calibrate) or load a checkpoint that holds its observers"
            )
        return qparams_from_range(self.min_val, self.max_val, bits, signed)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}"


def observers(model: nn.Module) -> Iterator[ActivationObserver]:
    return (m for m in model.modules() if isinstance(m, ActivationObserver))


@contextlib.contextmanager
def observing(model: nn.Module, reset: bool = False) -> Iterator[nn.Module]:
    """Within the block, every activation observer of ``model`` updates its range."""
    obs = list(observers(model))
    if reset:
        for o in obs:
            o.reset()
    for o in obs:
        o.calibrating = True
    try:
        yield model
    finally:
        for o in obs:
            o.calibrating = False


@torch.no_grad()
def calibrate(model: nn.Module, batches, *, reset: bool = True, max_batches: int | None = None) -> int:
    """Set the activation ranges of ``model`` from ``batches`` (an iterable of inputs or
    (input, label) pairs) without touching weights or BatchNorm statistics.

    Runs in eval mode under no_grad; restores the model's train/eval state. Returns the
    number of batches seen.
    """
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with observing(model, reset=reset):
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x)
                seen += 1
                if max_batches is not None and seen >= max_batches:
                    break
    finally:
        model.train(was_training)
    return seen
