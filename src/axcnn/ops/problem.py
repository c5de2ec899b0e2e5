"""The integer problem every backend solves, independent of how it is computed.

A quantized convolution is described by activation codes ``qa`` (B, C, H, W), weight codes
``qw`` (OC, C/groups, kh, kw) -- both float tensors holding exact integers --, the negative
zero points ``n_a`` (scalar) and ``n_w`` (per output channel), the conv geometry and, for the
approximate case, the LUT as an int32 tensor with the index offsets of signed codes.

The integer accumulator each backend returns (int64) is

    acc[b, o, y, x] = sum over taps of  P(a, w) + n_w[o]*a + n_a*w + n_a*n_w[o]

with P(a, w) = LUT[a + a_off, w + w_off] (approximate) or a*w (exact); taps that fall in the
padding read the code of real zero (-n_a). Dequantization is ``acc * s_a * s_w[o]``. For the
exact product this equals sum (a + n_a)(w + n_w), the integer form of the real product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ConvGeometry:
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def output_hw(self, h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return oh, ow


@dataclass
class IntConvProblem:
    qa: torch.Tensor            # (B, C, H, W) activation codes
    qw: torch.Tensor            # (OC, C/groups, kh, kw) weight codes
    n_a: float | torch.Tensor   # negative zero point of the activations (0 when signed); a
                                # 0-dim device tensor in CUDA training, so the forward need
                                # not read it back (backends that need a number call float())
    n_w: torch.Tensor           # (OC,) negative zero points of the weights
    geometry: ConvGeometry
    table: torch.Tensor | None = None  # int32 LUT on qa's device, or None for exact products
    a_offset: int = 0
    w_offset: int = 0
    signed: bool | None = None  # code format when known; GPU backends then need not read the
                                # code range back (a host sync) to pick their exact kernel

    @property
    def groups(self) -> int:
        return self.geometry.groups
