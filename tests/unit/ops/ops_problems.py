"""Random integer conv problems shared by the backend tests (CPU, interpreter and GPU)."""

from __future__ import annotations

import torch

from axcnn.ops import LUTTensors
from axcnn.ops.problem import ConvGeometry, IntConvProblem


def random_problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, *, device="cpu",
                   with_grads=False):
    """Codes, zero points and geometry of a random quantized conv for ``lut``; returns
    (IntConvProblem on ``device``, its LUTTensors)."""
    signed = lut.signed
    lo = -(1 << (lut.a_bits - 1)) if signed else 0
    hi = lo + (1 << lut.a_bits) - 1
    qa = torch.randint(lo, hi + 1, (B, C, H, W), generator=gen).float()
    qw = torch.randint(lo, hi + 1, (OC, C // groups, *k), generator=gen).float()
    n_a = 0.0 if signed else -float(torch.randint(0, max(1, hi // 2), (), generator=gen))
    n_w = torch.zeros(OC) if signed else -torch.randint(0, hi, (OC,), generator=gen).float()
    lt = LUTTensors.from_lut(lut, device, with_grads=with_grads)
    return IntConvProblem(qa.to(device), qw.to(device), n_a, n_w.to(device),
                          ConvGeometry(stride, pad, dil, groups), lt.table, lt.a_offset,
                          lt.w_offset), lt
