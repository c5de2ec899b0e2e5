"""Quantization parameters and fake-quant primitives."""

from __future__ import annotations

import pytest
import torch

from axcnn.errors import ConfigError
from axcnn.quant import (EPS, QuantSpec, code_bounds, dequantize, qparams_from_range, quantize,
                         weight_qparams, weight_range)

T = torch.tensor


def test_code_bounds():
    assert code_bounds(8, False) == (0, 255)
    assert code_bounds(8, True) == (-128, 127)
    assert code_bounds(2, True) == (-2, 1)


def test_quant_spec_validation_and_label():
    assert QuantSpec().label == "8u"
    assert QuantSpec(4, 4, True).label == "4s"
    assert QuantSpec(8, 4).label == "8x4u"
    for bad in (1, 9, 0, 8.0, "8"):
        with pytest.raises(ConfigError):
            QuantSpec(a_bits=bad)
        with pytest.raises(ConfigError):
            QuantSpec(w_bits=bad)


def test_unsigned_range_includes_zero():
    # all-positive data: the range is widened down to 0, so code 0 is real 0
    s, n = qparams_from_range(T(0.5), T(2.0), 8, False)
    assert s.item() == pytest.approx(2.0 / 255)
    assert n.item() == 0
    # all-negative data: widened up to 0; real 0 is the top code
    s, n = qparams_from_range(T(-3.0), T(-1.0), 8, False)
    assert s.item() == pytest.approx(3.0 / 255)
    assert -n.item() == 255


def test_unsigned_by_hand():
    s, n = qparams_from_range(T(-1.0), T(3.0), 8, False)
    assert s.item() == pytest.approx(4.0 / 255)
    assert n.item() == -64          # round(-63.75)
    assert s.dtype == torch.float32 and n.dtype == torch.float32


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("lo,hi", [(-1.0, 3.0), (-0.37, 0.01), (0.2, 5.0), (-7.0, -0.5), (-1e-3, 2e3), (-2.5, 2.5)])
def test_zero_code_dequantizes_to_exact_zero(bits, lo, hi):
    s, n = qparams_from_range(T(lo), T(hi), bits, False)
    zero_code = -n
    assert 0 <= zero_code.item() <= (1 << bits) - 1
    assert zero_code.item() == int(zero_code.item())
    assert dequantize(zero_code, s, n).item() == 0.0
    assert quantize(torch.zeros(3), s, n, bits, False).tolist() == [zero_code.item()] * 3


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_signed_is_symmetric(bits):
    s, n = qparams_from_range(T(-0.5), T(2.0), bits, True)
    assert n.item() == 0
    assert s.item() == pytest.approx(2.0 / ((1 << (bits - 1)) - 1))
    s2, n2 = qparams_from_range(T(-4.0), T(1.0), bits, True)
    assert n2.item() == 0 and s2.item() == pytest.approx(4.0 / ((1 << (bits - 1)) - 1))
    assert quantize(T([0.0]), s, n, bits, True).item() == 0


@pytest.mark.parametrize("signed", [False, True])
def test_eps_floor_for_all_zero_range(signed):
    s, n = qparams_from_range(T(0.0), T(0.0), 8, signed)
    assert s.item() == pytest.approx(EPS)
    assert n.item() == 0
    q = quantize(torch.zeros(5), s, n, 8, signed)
    assert torch.all(q == 0)
    assert torch.all(torch.isfinite(dequantize(q, s, n)))


def test_per_channel_shapes():
    lo, hi = T([-1.0, 0.0, -2.0]), T([2.0, 3.0, 0.0])
    s, n = qparams_from_range(lo, hi, 4, False)
    assert s.shape == n.shape == (3,)
    assert torch.allclose(s, T([3 / 15, 3 / 15, 2 / 15]))
    assert n.tolist() == [-5.0, 0.0, -15.0]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_round_trip_error_is_at_most_half_a_step(signed, bits):
    g = torch.Generator().manual_seed(bits + 10 * signed)
    lo, hi = -1.3, 2.9
    x = torch.rand(5000, generator=g) * (hi - lo) + lo
    x = torch.cat([x, T([lo, hi, 0.0])])
    s, n = qparams_from_range(x.min(), x.max(), bits, signed)
    q = quantize(x, s, n, bits, signed)
    qlo, qhi = code_bounds(bits, signed)
    assert torch.all(q == q.round()) and q.min() >= qlo and q.max() <= qhi
    err = (dequantize(q, s, n) - x).abs()
    assert err.max().item() <= s.item() / 2 * (1 + 1e-5) + 1e-7


@pytest.mark.parametrize("signed", [False, True])
def test_clamping(signed):
    s, n = qparams_from_range(T(-1.0), T(1.0), 4, signed)
    q = quantize(T([-100.0, 100.0, -1.0, 1.0]), s, n, 4, signed)
    lo, hi = code_bounds(4, signed)
    assert q[0].item() == lo and q[1].item() == hi
    assert q[2].item() >= lo and q[3].item() <= hi


def test_rounding_half_to_even():
    s, n = T(1.0), T(0.0)
    assert quantize(T([0.5, 1.5, 2.5]), s, n, 8, False).tolist() == [0.0, 2.0, 2.0]


def test_quantize_per_channel_along_dim0():
    w = torch.stack([torch.full((2, 3), 0.5), torch.full((2, 3), 0.5)])
    s, n = T([0.5, 0.25]), T([0.0, -2.0])
    q = quantize(w, s, n, 8, False, channel_dim=0)
    assert torch.all(q[0] == 1) and torch.all(q[1] == 4)
    assert torch.allclose(dequantize(q, s, n, channel_dim=0), w)
    # activation-style per-channel on dim 1
    x = torch.ones(2, 2, 3)
    q1 = quantize(x, s, n, 8, False, channel_dim=1)
    assert torch.all(q1[:, 0] == 2) and torch.all(q1[:, 1] == 6)


def test_weight_range_and_qparams():
    w = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    lo, hi = weight_range(w, per_channel=False)
    assert lo.item() == w.min().item() and hi.item() == w.max().item()
    lo, hi = weight_range(w, per_channel=True)
    assert torch.equal(lo, w.reshape(4, -1).min(1).values)
    assert torch.equal(hi, w.reshape(4, -1).max(1).values)
    s, n = weight_qparams(w, 8, False, per_channel=True)
    es, en = qparams_from_range(w.reshape(4, -1).min(1).values, w.reshape(4, -1).max(1).values, 8, False)
    assert torch.equal(s, es) and torch.equal(n, en)
    s, n = weight_qparams(w, 8, True, per_channel=False)
    assert s.ndim == 0 and n.item() == 0
    assert s.item() == pytest.approx(w.abs().max().item() / 127)


@pytest.mark.parametrize("per_channel", [False, True])
def test_weight_qparams_follow_the_current_weights(per_channel):
    w = torch.nn.Parameter(torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(1)))
    s1, _ = weight_qparams(w, 8, False, per_channel)
    with torch.no_grad():
        w.mul_(0.25)          # the range shrinks: the scale must shrink with it
    s2, _ = weight_qparams(w, 8, False, per_channel)
    assert torch.allclose(s2, s1 * 0.25, rtol=1e-5)
    with torch.no_grad():
        w.mul_(8.0)
    s3, _ = weight_qparams(w, 8, False, per_channel)
    assert torch.allclose(s3, s1 * 2.0, rtol=1e-5)
    assert not w.grad  # pure function of the weights, no autograd side effects
