"""approx_conv2d / approx_linear: backends against the reference, quantization semantics,
padding with the zero code, STE and error-aware gradients."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from axcnn.lut import MultiplierLUT, builtin
from axcnn.ops import approx_conv2d, approx_linear
from axcnn.quant import QuantSpec, dequantize, qparams_from_range, quantize, weight_qparams


@dataclass(frozen=True)
class Case:
    id: str
    B: int
    C: int
    H: int
    W: int
    OC: int
    k: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = False
    bits: int = 8
    signed: bool = False
    per_channel: bool = False
    lut: str = "drum4"
    x_range: tuple = (-1.0, 2.0)

    @property
    def spec(self) -> QuantSpec:
        return QuantSpec(self.bits, self.bits, self.signed, self.per_channel)

    def make_lut(self) -> MultiplierLUT:
        return builtin(self.lut, bits=self.bits, signed=self.signed)


CASES = [
    Case("basic-8u-gather", 2, 3, 5, 6, 4, (3, 3), padding=(1, 1), bias=True),
    Case("groups2-4s-pc", 1, 4, 6, 5, 6, (2, 3), stride=(2, 1), padding=(1, 2), groups=2,
         bits=4, signed=True, per_channel=True, lut="mitchell"),
    Case("depthwise-8s", 2, 4, 5, 5, 4, (3, 3), padding=(1, 1), groups=4, bias=True, signed=True,
         lut="trunc6"),
    Case("depthwise-mult-4u-pc", 1, 3, 6, 6, 6, (3, 3), stride=(2, 2), padding=(1, 1),
         dilation=(2, 2), groups=3, bits=4, per_channel=True, lut="bam1_2"),
    Case("dilated-4u", 1, 2, 7, 7, 3, (3, 3), padding=(2, 2), dilation=(2, 2), bits=4, lut="drum3"),
    Case("bag-8s-pc-bias", 2, 2, 8, 8, 3, (3, 3), padding=(1, 1), bias=True, signed=True,
         per_channel=True, lut="mitchell"),
    Case("strided-1x1-8u", 2, 5, 7, 7, 3, (1, 1), stride=(2, 3), lut="trunc5"),
    Case("no-pad-6u-asym", 1, 3, 6, 5, 2, (3, 2), stride=(1, 2), bits=6, lut="drum3",
         x_range=(0.3, 1.7)),
]
IDS = [c.id for c in CASES]


def make_operands(case: Case, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = case.x_range
    x = torch.rand(case.B, case.C, case.H, case.W, generator=g) * (hi - lo) + lo
    w = torch.randn(case.OC, case.C // case.groups, *case.k, generator=g) * 0.4
    b = torch.randn(case.OC, generator=g) if case.bias else None
    a_q = qparams_from_range(x.min(), x.max(), case.bits, case.signed)
    w_q = weight_qparams(w, case.bits, case.signed, case.per_channel)
    gy_shape = F.conv2d(x, w, None, case.stride, case.padding, case.dilation, case.groups).shape
    gy = torch.randn(gy_shape, generator=g)
    return x, w, b, a_q, w_q, gy


def run(case: Case, backend: str, lut, grad_rule="ste", seed: int = 0, x_range=None):
    """Forward and backward of approx_conv2d; returns (y, grad_x, grad_w, grad_b)."""
    x, w, b, a_q, w_q, gy = make_operands(case, seed)
    x.requires_grad_(True)
    w.requires_grad_(True)
    if b is not None:
        b.requires_grad_(True)
    y = approx_conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups,
                      a_qparams=a_q, w_qparams=w_q, spec=case.spec, lut=lut,
                      grad_rule=grad_rule, backend=backend)
    y.backward(gy)
    return y.detach(), x.grad, w.grad, None if b is None else b.grad


def dequantized(case: Case, seed: int = 0):
    x, w, b, a_q, w_q, gy = make_operands(case, seed)
    x_hat = dequantize(quantize(x, *a_q, case.bits, case.signed), *a_q)
    w_hat = dequantize(quantize(w, *w_q, case.bits, case.signed, channel_dim=0), *w_q, channel_dim=0)
    return x, w, b, a_q, w_q, gy, x_hat, w_hat


def assert_close_rel(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4):
    scale = max(b.abs().max().item(), 1e-12)
    assert torch.allclose(a, b, rtol=rel, atol=rel * scale), (a - b).abs().max().item() / scale


# --- backends agree ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_matches_reference_forward_and_error_aware_grads(case):
    lut = case.make_lut()
    assert not lut.is_exact()
    yt, gxt, gwt, gbt = run(case, "torch", lut, "error_aware")
    yr, gxr, gwr, gbr = run(case, "reference", lut, "error_aware")
    assert torch.equal(yt, yr)
    assert_close_rel(gxt, gxr)
    assert_close_rel(gwt, gwr)
    if case.bias:
        assert torch.equal(gbt, gbr)


@pytest.mark.parametrize("case_id,path", [("basic-8u-gather", "gather"), ("bag-8s-pc-bias", "bag"),
                                          ("dilated-4u", "bag")])
def test_cases_cover_both_lut_gemm_paths(case_id, path, path_spy):
    case = next(c for c in CASES if c.id == case_id)
    run(case, "torch", case.make_lut())
    assert path_spy[path] == 1 and sum(path_spy.values()) == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_matches_reference_quantized(case):
    yt = run(case, "torch", None)[0]
    yr = run(case, "reference", None)[0]
    assert torch.equal(yt, yr)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_exact_lut_reproduces_quantized_bit_for_bit(case):
    exact = builtin("exact", bits=case.bits, signed=case.signed)
    for backend in ("torch", "reference"):
        y_exact = run(case, backend, exact)[0]
        y_quant = run(case, backend, None)[0]
        assert torch.equal(y_exact, y_quant), backend
    # and the approximate LUT changes the result (the comparison is not vacuous)
    assert not torch.equal(run(case, "torch", case.make_lut())[0], run(case, "torch", None)[0])


def test_evoapprox_conv_matches_reference(evoapprox, evoapprox_name):
    table, info = evoapprox[evoapprox_name]
    lut = MultiplierLUT(table, signed=info["signed"], name=evoapprox_name)
    case = Case("evo", 1, 2, 4, 5, 3, (3, 3), padding=(1, 1), signed=lut.signed, bias=True)
    yt, gxt, gwt, _ = run(case, "torch", lut, "error_aware", seed=3)
    yr, gxr, gwr, _ = run(case, "reference", lut, "error_aware", seed=3)
    assert torch.equal(yt, yr)
    assert_close_rel(gxt, gxr)
    assert_close_rel(gwt, gwr)


# --- quantization semantics ----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_quantized_equals_conv_of_dequantized_operands(case):
    x, w, b, a_q, w_q, gy, x_hat, w_hat = dequantized(case)
    y = run(case, "torch", None)[0]
    ref = F.conv2d(x_hat.double(), w_hat.double(), None if b is None else b.double(),
                   case.stride, case.padding, case.dilation, case.groups)
    scale = F.conv2d(x_hat.abs().double(), w_hat.abs().double(), None, case.stride, case.padding,
                     case.dilation, case.groups)
    assert torch.all((y.double() - ref).abs() <= 1e-6 * scale + 1e-6 * (b.abs().max().item() if b is not None else 0) + 1e-9)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_quantized_within_quantization_error_of_float_conv(case):
    x, w, b, a_q, w_q, gy, x_hat, w_hat = dequantized(case)
    s_a = a_q[0]
    s_w = w_q[0].view(-1, 1, 1, 1) if w_q[0].ndim else w_q[0]
    # 1. dequantized operands within half a step of the float ones (x lies inside its range)
    assert torch.all((x_hat - x).abs() <= s_a / 2 * (1 + 1e-5) + 1e-7)
    assert torch.all((w_hat - w).abs() <= s_w / 2 * (1 + 1e-5) + 1e-7)
    # 2. hence |y_q - y| <= sum over taps of |x| dw + |w| dx + dx dw (padding taps are exact 0)
    dx = torch.full_like(x, s_a.item() / 2)
    dw = (s_w / 2).expand_as(w)
    conv = lambda a, k: F.conv2d(a.double(), k.double(), None, case.stride, case.padding,
                                 case.dilation, case.groups)
    bound = conv(x.abs(), dw) + conv(dx, w.abs()) + conv(dx, dw)
    y_q = run(case, "torch", None)[0]
    y = F.conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)
    err = (y_q.double() - y.double()).abs()
    assert torch.all(err <= bound * (1 + 1e-4) + 1e-5)
    assert err.max() > 0  # the quantized layer really is quantized


# --- padding uses the code of real zero ----------------------------------------------------------

def padded_case(x_range, bits=8, signed=False, lut="drum4"):
    return Case("pad", 1, 2, 5, 5, 3, (3, 3), padding=(2, 1), bits=bits, signed=signed, lut=lut,
                x_range=x_range)


def conv_with(case, x, w, a_q, w_q, lut, backend, padding):
    return approx_conv2d(x, w, None, case.stride, padding, case.dilation, case.groups,
                         a_qparams=a_q, w_qparams=w_q, spec=case.spec, lut=lut, backend=backend)


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("stale_range", [False, True], ids=["own-range", "stale-negative-range"])
def test_padding_behaves_like_real_zero(backend, stale_range):
    """Input values all > 0. With its own range (widened to 0) code 0 is real 0; with a
    range kept from earlier batches that reached below 0 (an EMA observer), code 0 is a
    negative value and real 0 is an interior code: padding must use that code."""
    case = padded_case((0.5, 2.0))
    x, w, _, a_q, w_q, _ = make_operands(case)
    assert x.min() > 0
    if stale_range:
        a_q = qparams_from_range(torch.tensor(-0.8), torch.tensor(2.0), 8, False)
    zero_code = -a_q[1].item()
    assert (zero_code != 0) == stale_range
    assert dequantize(torch.tensor(0.0), *a_q).item() != 0.0 or not stale_range
    lut = case.make_lut()
    for the_lut in (lut, None):
        y_pad = conv_with(case, x, w, a_q, w_q, the_lut, backend, case.padding)
        # explicit zero padding in real space quantizes to the zero code exactly
        x_padded = F.pad(x, (case.padding[1],) * 2 + (case.padding[0],) * 2, value=0.0)
        y_explicit = conv_with(case, x_padded, w, a_q, w_q, the_lut, backend, 0)
        assert torch.equal(y_pad, y_explicit)
    # the quantized result matches F.conv2d with zero padding of the dequantized operands
    x_hat = dequantize(quantize(x, *a_q, 8, False), *a_q)
    w_hat = dequantize(quantize(w, *w_q, 8, False), *w_q)
    ref = F.conv2d(x_hat, w_hat, None, 1, case.padding)
    y_q = conv_with(case, x, w, a_q, w_q, None, backend, case.padding)
    assert torch.allclose(y_q, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    if stale_range:
        # padding with code 0 instead would be visibly wrong at the border
        x_code0 = F.pad(x_hat, (1, 1, 2, 2), value=dequantize(torch.tensor(0.0), *a_q).item())
        wrong = F.conv2d(x_code0, w_hat)
        assert not torch.allclose(wrong, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_padding_signed(backend):
    case = padded_case((-1.0, 0.5), bits=4, signed=True, lut="mitchell")
    x, w, _, a_q, w_q, _ = make_operands(case)
    x_padded = F.pad(x, (1, 1, 2, 2))
    lut = case.make_lut()
    assert torch.equal(conv_with(case, x, w, a_q, w_q, lut, backend, case.padding),
                       conv_with(case, x_padded, w, a_q, w_q, lut, backend, 0))


# --- gradients ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ste_grads_equal_autograd_of_dequantized_conv(case):
    x, w, b, a_q, w_q, gy, x_hat, w_hat = dequantized(case)
    for lut in (None, case.make_lut()):
        _, gx, gw, gb = run(case, "torch", lut, "ste")
        xh = x_hat.clone().requires_grad_(True)
        wh = w_hat.clone().requires_grad_(True)
        bh = None if b is None else b.clone().requires_grad_(True)
        F.conv2d(xh, wh, bh, case.stride, case.padding, case.dilation, case.groups).backward(gy)
        assert_close_rel(gx, xh.grad, 1e-5)
        assert_close_rel(gw, wh.grad, 1e-5)
        if b is not None:
            assert torch.allclose(gb, bh.grad)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_error_aware_with_exact_lut_equals_ste(case):
    exact = builtin("exact", bits=case.bits, signed=case.signed)
    for backend in ("torch", "reference"):
        _, gx_e, gw_e, _ = run(case, backend, exact, "error_aware")
        _, gx_s, gw_s, _ = run(case, backend, exact, "ste")
        assert_close_rel(gx_e, gx_s, 1e-5)
        assert_close_rel(gw_e, gw_s, 1e-5)


def test_error_aware_differs_from_ste_for_an_approximate_lut():
    case = CASES[0]
    lut = builtin("trunc8", bits=8)
    _, gx_e, gw_e, _ = run(case, "torch", lut, "error_aware")
    _, gx_s, gw_s, _ = run(case, "torch", lut, "ste")
    assert not torch.allclose(gx_e, gx_s, rtol=1e-3)
    assert not torch.allclose(gw_e, gw_s, rtol=1e-3)


def test_error_aware_window_changes_grads():
    case = CASES[0]
    lut = builtin("mitchell", bits=8)
    x, w, b, a_q, w_q, gy = make_operands(case)
    grads = []
    for window in (1, 4):
        xx = x.clone().requires_grad_(True)
        approx_conv2d(xx, w, b, case.stride, case.padding, a_qparams=a_q, w_qparams=w_q,
                      lut=lut, grad_rule="error-aware", window=window).backward(gy)
        grads.append(xx.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_no_grad_needed_for_frozen_weights():
    case = CASES[1]
    x, w, b, a_q, w_q, gy = make_operands(case)
    x.requires_grad_(True)
    y = approx_conv2d(x, w, None, case.stride, case.padding, case.dilation, case.groups,
                      a_qparams=a_q, w_qparams=w_q, spec=case.spec, lut=case.make_lut(),
                      grad_rule="error_aware")
    y.backward(gy)
    assert x.grad is not None and w.grad is None


# --- approx_linear ---------------------------------------------------------------------------------

@pytest.mark.parametrize("signed", [False, True])
def test_approx_linear_leading_dims(signed):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 5, generator=g)
    w = torch.randn(4, 5, generator=g)
    b = torch.randn(4, generator=g)
    a_q = qparams_from_range(x.min(), x.max(), 8, signed)
    w_q = weight_qparams(w, 8, signed, True)
    spec = QuantSpec(8, 8, signed, True)
    lut = builtin("drum4", bits=8, signed=signed)
    y = approx_linear(x, w, b, a_qparams=a_q, w_qparams=w_q, spec=spec, lut=lut)
    assert y.shape == (2, 3, 4)
    flat = approx_linear(x.reshape(6, 5), w, b, a_qparams=a_q, w_qparams=w_q, spec=spec, lut=lut)
    assert torch.equal(y.reshape(6, 4), flat)
    conv = approx_conv2d(x.reshape(6, 5, 1, 1), w.view(4, 5, 1, 1), b, a_qparams=a_q,
                         w_qparams=w_q, spec=spec, lut=lut)
    assert torch.equal(flat, conv.view(6, 4))
    ref = approx_linear(x, w, b, a_qparams=a_q, w_qparams=w_q, spec=spec, lut=lut, backend="reference")
    assert torch.equal(y, ref)
    # quantized: F.linear of the dequantized operands
    yq = approx_linear(x, w, b, a_qparams=a_q, w_qparams=w_q, spec=spec)
    x_hat = dequantize(quantize(x, *a_q, 8, signed), *a_q)
    w_hat = dequantize(quantize(w, *w_q, 8, signed, channel_dim=0), *w_q, channel_dim=0)
    assert torch.allclose(yq, F.linear(x_hat, w_hat, b), rtol=1e-5, atol=1e-5)


def test_approx_linear_grads_flow():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 2, 6, generator=g, requires_grad=True)
    w = torch.randn(5, 6, generator=g, requires_grad=True)
    a_q = qparams_from_range(x.min().detach(), x.max().detach(), 8, False)
    w_q = weight_qparams(w, 8, False, False)
    y = approx_linear(x, w, None, a_qparams=a_q, w_qparams=w_q, lut=builtin("drum4"),
                      grad_rule="error_aware")
    y.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape
    assert torch.all(torch.isfinite(x.grad)) and x.grad.abs().sum() > 0


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("grad", [False, True])
def test_output_is_contiguous_nchw(backend, grad):
    """Every backend returns contiguous NCHW (the GPU kernels write it): equal values in another
    layout make the float layers after the conv sum in another order, so model outputs of two
    backends would differ in the last bits."""
    g = torch.Generator().manual_seed(9)
    x = torch.rand(2, 5, 7, 6, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 5, 3, 3, generator=g, requires_grad=grad)
    a_q = qparams_from_range(x.min(), x.max(), 8, False)
    w_q = weight_qparams(w.detach(), 8, False, False)
    with torch.set_grad_enabled(grad):
        y = approx_conv2d(x, w, torch.randn(6, generator=g), 1, 1, a_qparams=a_q, w_qparams=w_q,
                          lut=builtin("drum4"), backend=backend)
    assert y.shape == (2, 6, 7, 6) and y.is_contiguous() and y.requires_grad == grad
