"""The Triton kernels on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``).

The interpreter must be switched on before Triton compiles anything, so the checks run in a
child process (``test_kernels_under_the_interpreter``); they skip where Triton is missing. The
same checks run for real on a GPU machine in ``test_gpu_backends.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

INNER = os.environ.get("AXCNN_TRITON_INTERPRETER_RUN") == "1"
HAVE_TRITON = importlib.util.find_spec("triton") is not None

pytestmark = pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed")


@pytest.mark.slow
@pytest.mark.skipif(INNER, reason="driver of the interpreter run")
def test_kernels_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", AXCNN_DECOMPOSED_TRITON_ON_CPU="1",
               AXCNN_TRITON_INTERPRETER_RUN="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        __file__, "-k", "inner"], env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout


inner = pytest.mark.skipif(not INNER, reason="runs inside the interpreter child process")


def _problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, signed, with_grads=False):
    from ops_problems import random_problem

    assert lut.signed == signed
    return random_problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut,
                          with_grads=with_grads)


SHAPES = [
    (2, 3, 5, 6, 20, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (1, 4, 6, 5, 6, (2, 3), (2, 1), (1, 2), (1, 1), 2),
    (1, 2, 7, 7, 3, (3, 3), (1, 1), (2, 2), (2, 2), 1),
    (2, 5, 7, 7, 3, (1, 1), (2, 3), (0, 0), (1, 1), 1),
    (2, 4, 5, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 4),      # depthwise
    (1, 3, 6, 6, 6, (3, 3), (2, 2), (1, 1), (2, 2), 3),      # channel multiplier 2
]


@inner
@pytest.mark.parametrize("lut_name,bits,signed", [
    ("drum4", 8, False), ("drum4", 8, True), ("mitchell", 8, False), ("trunc6", 8, True),
    ("mitchell", 4, True), ("trunc3", 4, False),
])
def test_inner_forward_bit_exact(lut_name, bits, signed):
    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(bits)
    lut = builtin(lut_name, bits=bits, signed=signed)
    ref = get_backend("torch")
    tri, dec = get_backend("triton", "cpu"), get_backend("decomposed", "cpu")
    for shape in SHAPES:
        p, _ = _problem(gen, *shape, lut, signed)
        want = ref.conv2d_acc(p)
        assert torch.equal(tri.conv2d_acc(p), want), shape
        tbm.FORCE_MODE = "direct"       # the direct-gather kernel
        try:
            assert torch.equal(tri.conv2d_acc(p), want), shape
        finally:
            tbm.FORCE_MODE = None
        old = tbm.TAP_TABLE_MAX
        tbm.TAP_TABLE_MAX = 1           # per-tap tables in chunks of output channels
        try:
            assert torch.equal(tri.conv2d_acc(p), want), shape
        finally:
            tbm.TAP_TABLE_MAX = old
        if lut_name != "mitchell" or bits == 4:
            assert torch.equal(dec.conv2d_acc(p), want), shape
        p.table = None                   # exact products (tensor-core kernel)
        assert torch.equal(tri.conv2d_acc(p), ref.conv2d_acc(p)), shape


@inner
def test_inner_fused_dequant_and_gemm():
    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.functional import _dequant_acc

    gen = torch.Generator().manual_seed(3)
    lut = builtin("trunc5", bits=8)
    ref = get_backend("torch")
    for impl in (get_backend("triton", "cpu"), get_backend("decomposed", "cpu")):
        p, lt = _problem(gen, *SHAPES[0], lut, False)
        s_a, s_w, bias = torch.tensor(0.0173), torch.rand(20, generator=gen) * 0.01, torch.randn(20)
        want = _dequant_acc(ref.conv2d_acc(p), s_a, s_w) + bias.view(1, -1, 1, 1)
        assert torch.equal(impl.conv2d_dequant(p, s_a, s_w, bias), want)
        a = torch.randint(0, 256, (37, 2, 29), generator=gen)
        w = torch.randint(0, 256, (2, 29, 19), generator=gen)
        assert torch.equal(impl.lut_gemm(a, w, lt.table), ref.lut_gemm(a, w, lt.table))


@inner
@pytest.mark.parametrize("lut_name,signed", [("drum4", False), ("mitchell", True)])
def test_inner_error_aware_gradients(lut_name, signed):
    from axcnn.lut import builtin
    from axcnn.ops import get_backend

    gen = torch.Generator().manual_seed(11)
    lut = builtin(lut_name, bits=8, signed=signed)
    ref, tri = get_backend("torch"), get_backend("triton", "cpu")
    for shape in SHAPES[:4]:
        p, lt = _problem(gen, *shape, lut, signed, with_grads=True)
        gy = torch.randn(ref.conv2d_acc(p).shape, generator=gen)
        s_a, s_w = torch.tensor(0.02), torch.rand(gy.shape[1], generator=gen) * 0.01 + 1e-3
        got = tri.error_aware_grads(p, gy, s_a, s_w, lt.grad_a, lt.grad_w, True, True)
        want = ref.error_aware_grads(p, gy, s_a, s_w, lt.grad_a, lt.grad_w, True, True)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item()), shape


@inner
def test_inner_tap_histogram():
    from axcnn.ops.problem import ConvGeometry, IntConvProblem
    from axcnn.ops.torch_backend import unfold_codes
    from axcnn.ops.triton_backend import tap_histogram

    gen = torch.Generator().manual_seed(0)
    for (B, C, H, W, OC, k, st, pd, dl, G, bits, signed) in [
            (2, 3, 5, 6, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 8, False),
            (1, 4, 6, 5, 6, (2, 3), (2, 1), (1, 2), (1, 1), 2, 4, True),
            (2, 4, 5, 5, 4, (3, 3), (1, 1), (1, 1), (2, 2), 4, 8, True)]:
        lo = -(1 << (bits - 1)) if signed else 0
        qa = torch.randint(lo, lo + (1 << bits), (B, C, H, W), generator=gen).float()
        qw = torch.zeros(OC, C // G, *k)
        n_a = 0.0 if signed else -3.0
        geo = ConvGeometry(st, pd, dl, G)
        a_off = (1 << (bits - 1)) if signed else 0
        a = (unfold_codes(IntConvProblem(qa, qw, n_a, torch.zeros(OC), geo)) + a_off).long()
        M, _, K = a.shape
        R = 1 << bits
        tap = torch.arange(G * K).view(1, G, K) * R
        want = torch.bincount((a + tap).reshape(-1), minlength=G * K * R).view(G, K, R)
        assert torch.equal(tap_histogram(qa, qw.shape, G, geo, bits, a_off, n_a), want)
