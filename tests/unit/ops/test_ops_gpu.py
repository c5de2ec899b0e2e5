"""The torch backend on CUDA tensors against the reference (run on a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from axcnn.lut import MultiplierLUT, builtin
from axcnn.ops import approx_conv2d, approx_matmul
from axcnn.quant import QuantSpec, qparams_from_range, weight_qparams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def codes(shape, bits, signed, gen):
    lo = -(1 << (bits - 1)) if signed else 0
    return torch.randint(lo, lo + (1 << bits), shape, generator=gen, dtype=torch.int64)


def oracle(a, w, lut):
    t = lut.table.astype(np.int64)
    return t[(a.numpy() + lut.a_offset)[:, :, None], (w.numpy() + lut.w_offset)[None]].sum(axis=1)


@pytest.mark.parametrize("signed", [False, True])
def test_matmul_cuda(signed):
    gen = torch.Generator().manual_seed(0)
    luts = [builtin("drum4", bits=8, signed=signed), builtin("trunc3", bits=4, signed=signed)]
    rng = np.random.default_rng(1)
    big = rng.choice([-32768, 32767, 100] if signed else [0, 65535, 65000], size=(256, 256))
    luts.append(MultiplierLUT(big, signed=signed))
    for lut in luts:
        for M, K, N in [(3, 7, 5), (300, 37, 9), (64, 3000, 3)]:
            a = codes((M, K), lut.a_bits, signed, gen)
            w = codes((K, N), lut.w_bits, signed, gen)
            out = approx_matmul(a.cuda(), w.cuda(), lut, backend="torch")
            assert out.device.type == "cuda"
            assert np.array_equal(out.cpu().numpy(), oracle(a, w, lut)), (lut.name, M, K, N)


@pytest.mark.parametrize("signed,bits,groups,per_channel", [
    (False, 8, 1, False), (True, 8, 2, True), (False, 4, 4, True), (True, 4, 1, False),
])
def test_conv_cuda_matches_reference(signed, bits, groups, per_channel):
    g = torch.Generator().manual_seed(bits + groups)
    x = torch.rand(2, 4, 9, 9, generator=g) * 3 - 1
    w = torch.randn(8, 4 // groups, 3, 3, generator=g) * 0.3
    gy = torch.randn(2, 8, 6, 6, generator=g)  # (9 + 4 - 3) // 2 + 1
    spec = QuantSpec(bits, bits, signed, per_channel)
    a_q = qparams_from_range(x.min(), x.max(), bits, signed)
    w_q = weight_qparams(w, bits, signed, per_channel)
    lut = builtin("mitchell", bits=bits, signed=signed)
    results = {}
    for dev, backend in (("cuda", "torch"), ("cpu", "reference")):
        for the_lut in (lut, None):
            xx = x.detach().clone().to(dev).requires_grad_(True)   # fresh leaves each time
            ww = w.detach().clone().to(dev).requires_grad_(True)
            y = approx_conv2d(xx, ww, None, 2, 2, 1, groups, spec=spec, lut=the_lut,
                              a_qparams=tuple(t.to(dev) for t in a_q),
                              w_qparams=tuple(t.to(dev) for t in w_q),
                              grad_rule="error_aware", backend=backend)
            y.backward(gy.to(dev))
            results[dev, the_lut is None] = (y.detach().cpu(), xx.grad.cpu(), ww.grad.cpu())
    for exact in (False, True):
        yc, gxc, gwc = results["cuda", exact]
        yr, gxr, gwr = results["cpu", exact]
        assert torch.equal(yc, yr)
        for a, b in ((gxc, gxr), (gwc, gwr)):
            scale = b.abs().max().item()
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * scale)
