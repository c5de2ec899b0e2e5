"""Activation observers: buffers in the state_dict, updated only when asked to.

``ActivationObserver`` keeps an exponential moving average of the batch min/max
(momentum 0.1; the first batch sets the range), as the seed did. It updates while its module
is in training mode (quantization-aware training) or inside :func:`observing` (calibration in
eval mode, which leaves BatchNorm statistics alone); otherwise the stored range is used.

Nothing here waits for the GPU in ``forward``: the first-batch case is blended on the device
with ``torch.where``. Whether the observer has a range (the ``initialized`` buffer) is cached as
a Python value keyed on that buffer and its version counter, so :meth:`ActivationObserver.qparams`
reads the device at most once after a reset, a ``load_state_dict`` or a direct write to the
buffer, never while the observer keeps updating or keeps being used for inference.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .qparams import qparams_from_range


class ActivationObserver(nn.Module):
    """Running min/max of the activations that enter a quantized layer (see the module doc)."""

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("min_val", torch.tensor(0.0))
        self.register_buffer("max_val", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.calibrating = False  # set by observing(); plain attribute, not saved
        self._ready: tuple | None = None  # (initialized tensor, its version, value) or None
        self._remember_ready(False)

    def reset(self) -> None:
        self.min_val.zero_()
        self.max_val.zero_()
        self.initialized.fill_(False)
        self._remember_ready(False)

    @property
    def updating(self) -> bool:
        return self.training or self.calibrating

    def _remember_ready(self, value: bool) -> None:
        flag = self.initialized
        self._ready = None if flag.is_inference() else (flag, flag._version, value)

    @property
    def ready(self) -> bool:
        """Whether the observer holds a range; reads the device only when the cached answer
        may be stale (after reset, load_state_dict, ``.to()`` or a direct buffer write)."""
        flag, hit = self.initialized, self._ready
        if hit is not None and hit[0] is flag and hit[1] == flag._version:
            return hit[2]
        value = bool(flag)
        self._remember_ready(value)
        return value

    def _load_from_state_dict(self, *args, **kwargs):
        self._ready = None
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.updating and x.numel() > 0:
            lo, hi = torch.aminmax(x.detach())
            lo, hi = lo.float(), hi.float()
            m = self.momentum
            # the EMA step and the first batch, chosen on the device (no host sync); the EMA
            # operations are the ones of the former in-place update mul_(1 - m).add_(m * lo)
            seen = self.initialized
            self.min_val.copy_(torch.where(seen, self.min_val * (1 - m) + m * lo, lo))
            self.max_val.copy_(torch.where(seen, self.max_val * (1 - m) + m * hi, hi))
            self.initialized.fill_(True)
            self._remember_ready(True)
        return x

    def qparams(self, bits: int, signed: bool, owner: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        if not self.ready:
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


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches, *, max_batches: int | None = None) -> int:
    """Re-estimate every BatchNorm's running mean and variance from ``batches`` with the model
    as it now computes (e.g. with approximate products), without training anything.

    The statistics are reset and averaged over the batches (cumulative average, as
    ``momentum=None``); only the BatchNorm layers run in training mode, so activation observers
    and everything else stay as they are. Restores each module's mode and momentum. Returns
    the number of batches seen (0 leaves the statistics untouched)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    if not bns:
        return 0
    modes = {m: m.training for m in model.modules()}
    saved = [(m, m.momentum, m.running_mean.clone(), m.running_var.clone(),
              m.num_batches_tracked.clone()) for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    try:
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            seen += 1
            if max_batches is not None and seen >= max_batches:
                break
    finally:
        for m, momentum, mean, var, count in saved:
            m.momentum = momentum
            if not seen:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        for m, training in modes.items():
            m.train(training)
    return seen
