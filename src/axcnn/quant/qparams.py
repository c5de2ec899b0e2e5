"""Quantization parameters and the fake-quant primitives (seed-compatible semantics).

Unsigned (affine, the default), for ``b`` bits and Q = 2^b - 1:

    s = max((max - min) / Q, eps)      n = round(min / s)   (the "negative zero point", <= 0)
    q = clamp(round(x / s) - n, 0, Q)  real value = s * (q + n)

The observed range is widened to include 0, so real 0 always has a code (``-n``), which is
what padding uses. Signed (symmetric): s = max(|min|, |max|) / (2^(b-1) - 1), n = 0,
q = clamp(round(x / s), -2^(b-1), 2^(b-1) - 1). Rounding is round-half-to-even
(``torch.round``). Scales may be per tensor (0-d) or per output channel (1-d, weights only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError

EPS = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths and code format of a quantized layer's two operands."""

    a_bits: int = 8
    w_bits: int = 8
    signed: bool = False
    per_channel: bool = False

    def __post_init__(self) -> None:
        for name in ("a_bits", "w_bits"):
            b = getattr(self, name)
            if not isinstance(b, int) or not 2 <= b <= 8:
                raise ConfigError(f"{name} must be an integer from 2 to 8, got {b!r}")

    @property
    def label(self) -> str:
        bits = str(self.a_bits) if self.a_bits == self.w_bits else f"{self.a_bits}x{self.w_bits}"
        return bits + ("s" if self.signed else "u")


def code_bounds(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def qparams_from_range(min_val: torch.Tensor, max_val: torch.Tensor, bits: int,
                       signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, n) for an observed range; both float32, same shape as ``min_val``."""
    min_val = torch.clamp(min_val.float(), max=0.0)
    max_val = torch.clamp(max_val.float(), min=0.0)
    if signed:
        amax = torch.maximum(-min_val, max_val)
        scale = torch.clamp(amax / ((1 << (bits - 1)) - 1), min=EPS)
        return scale, torch.zeros_like(scale)
    scale = torch.clamp((max_val - min_val) / ((1 << bits) - 1), min=EPS)
    return scale, torch.round(min_val / scale)


def _bcast(t: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    if t.ndim == 0:
        return t
    shape = [1] * ndim
    shape[channel_dim] = -1
    return t.reshape(shape)


def quantize(x: torch.Tensor, scale: torch.Tensor, n: torch.Tensor, bits: int, signed: bool,
             channel_dim: int = 0) -> torch.Tensor:
    """Integer codes of ``x`` as a float tensor holding exact integers."""
    lo, hi = code_bounds(bits, signed)
    s = _bcast(scale, x.ndim, channel_dim)
    nn_ = _bcast(n, x.ndim, channel_dim)
    return torch.clamp(torch.round(x / s) - nn_, lo, hi)


def dequantize(q: torch.Tensor, scale: torch.Tensor, n: torch.Tensor,
               channel_dim: int = 0) -> torch.Tensor:
    return _bcast(scale, q.ndim, channel_dim) * (q + _bcast(n, q.ndim, channel_dim))


def weight_range(weight: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The current min/max of a weight tensor, per tensor or per output channel (dim 0)."""
    w = weight.detach()
    if per_channel:
        flat = w.reshape(w.shape[0], -1)
        return flat.min(dim=1).values, flat.max(dim=1).values
    return w.min(), w.max()


def weight_qparams(weight: torch.Tensor, bits: int, signed: bool,
                   per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ranges follow the current weights (no running min/max that only grows)."""
    return qparams_from_range(*weight_range(weight, per_channel), bits, signed)
