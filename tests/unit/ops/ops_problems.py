"""Helpers shared by the backend tests (CPU, interpreter and GPU): random integer conv
problems and the driver that reruns a test file's ``inner`` tests under the Triton interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from axcnn.ops import LUTTensors
from axcnn.ops.problem import ConvGeometry, IntConvProblem


def random_problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, *, device="cpu",
                   with_grads=False, window=2):
    """Codes, zero points and geometry of a random quantized conv for ``lut``; returns
    (IntConvProblem on ``device``, its LUTTensors)."""
    signed = lut.signed
    lo = -(1 << (lut.a_bits - 1)) if signed else 0
    hi = lo + (1 << lut.a_bits) - 1
    qa = torch.randint(lo, hi + 1, (B, C, H, W), generator=gen).float()
    qw = torch.randint(lo, hi + 1, (OC, C // groups, *k), generator=gen).float()
    n_a = 0.0 if signed else -float(torch.randint(0, max(1, hi // 2), (), generator=gen))
    n_w = torch.zeros(OC) if signed else -torch.randint(0, hi, (OC,), generator=gen).float()
    lt = LUTTensors.from_lut(lut, device, with_grads=with_grads, window=window)
    return IntConvProblem(qa.to(device), qw.to(device), n_a, n_w.to(device),
                          ConvGeometry(stride, pad, dil, groups), lt.table, lt.a_offset,
                          lt.w_offset), lt


def run_inner_tests_under_interpreter(test_file: str, flag: str) -> None:
    """Run ``test_file``'s tests named ``inner*`` in a child pytest with TRITON_INTERPRET=1
    (Triton kernels on the CPU) and the environment variable ``flag`` set; assert they pass."""
    env = dict(os.environ, TRITON_INTERPRET="1", AXCNN_DECOMPOSED_TRITON_ON_CPU="1", **{flag: "1"})
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        test_file, "-k", "inner"], env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout
