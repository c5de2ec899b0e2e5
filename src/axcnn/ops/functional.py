"""Approximate (and exactly quantized) matmul, conv2d and linear on real tensors.

Forward (per layer, see :mod:`axcnn.ops.problem` for the integer form):

    q_a = Q(x; s_a, n_a),  q_w = Q(w; s_w, n_w)
    y   = s_a * s_w * acc(q_a, q_w) + bias

with ``acc`` using the LUT in place of q_a*q_w (approximate) or the exact product
(``lut=None``: the quantized stage). Gradients (``GradRule``):

- ``STE``: the exact convolution gradient of the dequantized operands
  x_hat = s_a (q_a + n_a), w_hat = s_w (q_w + n_w) (no clipping mask, as in the seed).
- ``ERROR_AWARE``: the derivative of the multiplier itself replaces the exact operand:
  dL/dx at a tap = sum_out g * s_w * (dA[a, w] + n_w) and dL/dw = sum_out g * s_a * (dW[a, w] + n_a),
  where dA, dW are the smoothed derivative tables of the LUT (:mod:`axcnn.lut.gradients`). With
  the exact LUT they equal w and a, so the rule reduces to STE.

Inference fast path: when no gradient is needed and the backend has ``conv2d_dequant``
(triton, decomposed, the CUDA auto dispatcher), the dequantisation and the bias are fused into
the backend's epilogue -- float32(float64(acc) * s_a * s_w) + bias, the same IEEE operations as
the unfused path, so the output is bit-identical. Layers in eval mode pass their cached weight
codes ``qw`` and the activation zero point ``n_a`` as a Python float (no host sync per call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.grad import conv2d_input, conv2d_weight

from ..choices import Choice
from ..errors import ConfigError, LUTError
from ..lut import DEFAULT_WINDOW, MultiplierLUT, gradient_tables, index_offset
from ..quant import QuantSpec, quantize
from .backends import Backend, get_backend
from .problem import ConvGeometry, IntConvProblem


class GradRule(Choice):
    STE = "ste"
    ERROR_AWARE = "error_aware"

    @classmethod
    def what(cls) -> str:
        return "gradient rule"


@dataclass
class LUTTensors:
    """A LUT prepared for one device: the int32 table, index offsets, gradient tables."""

    table: torch.Tensor
    signed: bool
    a_bits: int
    w_bits: int
    grad_a: torch.Tensor | None = None
    grad_w: torch.Tensor | None = None
    window: int = DEFAULT_WINDOW   # the half-width grad_a / grad_w were derived with

    @property
    def a_offset(self) -> int:
        return index_offset(self.a_bits, self.signed)

    @property
    def w_offset(self) -> int:
        return index_offset(self.w_bits, self.signed)

    @classmethod
    def from_lut(cls, lut: MultiplierLUT, device: torch.device | str = "cpu", *,
                 with_grads: bool = False, window: int = DEFAULT_WINDOW) -> "LUTTensors":
        ga = gw = None
        if with_grads:
            ga_np, gw_np = gradient_tables(lut, window)
            ga, gw = torch.from_numpy(ga_np).to(device), torch.from_numpy(gw_np).to(device)
        return cls(torch.from_numpy(lut.table.copy()).to(device), lut.signed, lut.a_bits,
                   lut.w_bits, ga, gw, int(window))


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def check_lut_matches(lut: MultiplierLUT | LUTTensors, spec: QuantSpec, where: str = "") -> None:
    if lut.a_bits != spec.a_bits or lut.w_bits != spec.w_bits or lut.signed != spec.signed:
        name = getattr(lut, "name", "LUT")
        fmt = f"{lut.a_bits}x{lut.w_bits}-bit {'signed' if lut.signed else 'unsigned'}"
        want = f"{spec.a_bits}x{spec.w_bits}-bit {'signed' if spec.signed else 'unsigned'}"
        raise LUTError(f"{name} is a {fmt} multiplier but {where or 'the layer'} quantizes to "
                       f"{want}; use a matching LUT or --bits/--signed")


def _dequant_acc(acc: torch.Tensor, s_a: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
    scale = s_a.double() * (s_w.double().view(1, -1, 1, 1) if s_w.ndim else s_w.double())
    return (acc.double() * scale).float()


def quantize_weight(weight: torch.Tensor, w_qparams: tuple[torch.Tensor, torch.Tensor],
                    spec: QuantSpec) -> torch.Tensor:
    """Weight codes (float tensor of exact integers) as :func:`approx_conv2d` computes them;
    per-channel scales run along dim 0. Layers cache this in eval mode and pass it as ``qw``."""
    s_w, n_w = w_qparams
    return quantize(weight.detach(), s_w.detach(), n_w.detach(), spec.w_bits, spec.signed,
                    channel_dim=0)


def _int_problem(x, weight, s_a, n_a, s_w, n_w, spec, geometry, lut, qw, n_a_value):
    """The integer problem of one quantized conv (quantizes what is not given)."""
    qa = quantize(x.detach(), s_a, n_a, spec.a_bits, spec.signed)
    if qw is None:
        qw = quantize_weight(weight, (s_w, n_w), spec)
    oc = weight.shape[0]
    if n_a_value is not None:
        n_a = float(n_a_value)
    elif not n_a.is_cuda:
        n_a = float(n_a)            # free on the CPU; on CUDA it stays a device tensor (no sync)
    return IntConvProblem(
        qa=qa, qw=qw, n_a=n_a,
        n_w=n_w.expand(oc) if n_w.ndim == 0 else n_w,
        geometry=geometry,
        table=None if lut is None else lut.table,
        a_offset=0 if lut is None else lut.a_offset,
        w_offset=0 if lut is None else lut.w_offset,
        signed=spec.signed,
    )


class _QuantConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, s_a, n_a, s_w, n_w, spec, geometry, lut, grad_rule, impl,
                qw=None, n_a_value=None):
        problem = _int_problem(x, weight, s_a, n_a, s_w, n_w, spec, geometry, lut, qw, n_a_value)
        acc = impl.conv2d_acc(problem)
        ctx.save_for_backward(problem.qa, problem.qw, s_a, n_a, s_w, n_w)
        ctx.meta = (problem.n_a, geometry, lut, grad_rule, impl, x.shape, weight.shape, spec.signed)
        return _dequant_acc(acc, s_a, s_w).to(x.dtype).contiguous()

    @staticmethod
    def backward(ctx, grad_y):
        qa, qw, s_a, n_a, s_w, n_w = ctx.saved_tensors
        n_a_f, geometry, lut, grad_rule, impl, x_shape, w_shape, signed = ctx.meta
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx = gw = None
        g = geometry
        if grad_rule is GradRule.ERROR_AWARE and lut is not None:
            oc = w_shape[0]
            problem = IntConvProblem(qa, qw, n_a_f, n_w.expand(oc) if n_w.ndim == 0 else n_w,
                                     geometry, lut.table, lut.a_offset, lut.w_offset, signed)
            gx, gw = impl.error_aware_grads(problem, grad_y, s_a, s_w, lut,
                                            need_x, need_w)
        else:
            sw = s_w.view(-1, 1, 1, 1) if s_w.ndim else s_w
            nw = n_w.view(-1, 1, 1, 1) if n_w.ndim else n_w
            grad_y = grad_y.to(qa.dtype)
            if need_x:
                gx = conv2d_input(x_shape, sw * (qw + nw), grad_y, g.stride, g.padding,
                                  g.dilation, g.groups)
            if need_w:
                gw = conv2d_weight(s_a * (qa + n_a), w_shape, grad_y, g.stride, g.padding,
                                   g.dilation, g.groups)
        return gx, gw, None, None, None, None, None, None, None, None, None, None, None


def _prepare_lut(lut, spec: QuantSpec, device, grad_rule: GradRule, window: int):
    if lut is None or isinstance(lut, LUTTensors):
        return lut
    if isinstance(lut, MultiplierLUT):
        check_lut_matches(lut, spec)
        return LUTTensors.from_lut(lut, device, with_grads=grad_rule is GradRule.ERROR_AWARE,
                                   window=window)
    raise LUTError(f"expected a MultiplierLUT, LUTTensors or None, got {type(lut).__name__}")


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _fused_dequant(impl, x: torch.Tensor, bias: torch.Tensor | None):
    """The backend's fused ``conv2d_dequant`` where it gives the unfused path's exact result
    (float32 output and bias), else None."""
    fn = getattr(impl, "conv2d_dequant", None)
    if fn is None or x.dtype != torch.float32:
        return None
    if bias is not None and bias.dtype != torch.float32:
        return None
    return fn


def approx_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride=1, padding=0, dilation=1, groups: int = 1, *,
                  a_qparams: tuple[torch.Tensor, torch.Tensor],
                  w_qparams: tuple[torch.Tensor, torch.Tensor],
                  spec: QuantSpec = QuantSpec(),
                  lut: MultiplierLUT | LUTTensors | None = None,
                  grad_rule: GradRule | str = GradRule.STE,
                  backend: Backend | str = Backend.AUTO,
                  window: int = DEFAULT_WINDOW,
                  qw: torch.Tensor | None = None,
                  n_a: float | None = None) -> torch.Tensor:
    """Quantized conv2d whose products go through ``lut`` (exact products if None).

    The output is contiguous (NCHW) on every backend: the float layers after it (BatchNorm,
    pooling, Linear) may sum in a layout-dependent order, so equal values in another layout
    would not give equal model outputs.

    ``qw``: precomputed weight codes, ``quantize_weight(weight, w_qparams, spec)`` (layers
    cache them in eval mode; the backend sees this very tensor). ``n_a``: the activation zero
    point ``a_qparams[1]`` as a Python float (saves a host sync). None computes them here.
    """
    if isinstance(padding, str):
        raise ConfigError("string padding ('same'/'valid') is not supported; give the padding size")
    if qw is not None and qw.shape != weight.shape:
        raise ConfigError(f"precomputed weight codes have shape {tuple(qw.shape)}, the weight "
                          f"{tuple(weight.shape)}; pass quantize_weight(weight, ...) of this weight")
    grad_rule = GradRule.parse(grad_rule)
    impl = get_backend(backend, x.device)
    lut_t = _prepare_lut(lut, spec, x.device, grad_rule, window)
    if (lut_t is not None and grad_rule is GradRule.ERROR_AWARE and lut_t.grad_a is None):
        raise ConfigError("error-aware gradients need the LUT's gradient tables "
                          "(LUTTensors.from_lut(..., with_grads=True))")
    geometry = ConvGeometry(_pair(stride), _pair(padding), _pair(dilation), int(groups))
    s_a, n_a_t = (t.detach().to(x.device) for t in a_qparams)
    s_w, n_w = (t.detach().to(x.device) for t in w_qparams)
    fused = None if _needs_grad(x, weight, bias) else _fused_dequant(impl, x, bias)
    if fused is not None:
        problem = _int_problem(x, weight, s_a, n_a_t, s_w, n_w, spec, geometry, lut_t, qw, n_a)
        return fused(problem, s_a, s_w, None if bias is None else bias.detach()).contiguous()
    y = _QuantConv2dFn.apply(x, weight, s_a, n_a_t, s_w, n_w, spec, geometry, lut_t, grad_rule,
                             impl, qw, n_a)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def approx_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                  a_qparams, w_qparams, spec: QuantSpec = QuantSpec(),
                  lut: MultiplierLUT | LUTTensors | None = None,
                  grad_rule: GradRule | str = GradRule.STE,
                  backend: Backend | str = Backend.AUTO,
                  window: int = DEFAULT_WINDOW,
                  qw: torch.Tensor | None = None,
                  n_a: float | None = None) -> torch.Tensor:
    """Quantized linear layer (a 1x1 convolution over the flattened leading dimensions).

    ``qw``, ``n_a``: as in :func:`approx_conv2d`; ``qw`` has the conv shape (N, K, 1, 1).
    """
    lead = x.shape[:-1]
    K = x.shape[-1]
    N = weight.shape[0]
    # without gradients the bias goes into the conv (a fused epilogue adds it there); the
    # addition is the same elementwise float32 operation either way
    inner_bias = None if _needs_grad(x, weight, bias) else bias
    y = approx_conv2d(x.reshape(-1, K, 1, 1), weight.reshape(N, K, 1, 1), inner_bias,
                      a_qparams=a_qparams, w_qparams=w_qparams, spec=spec, lut=lut,
                      grad_rule=grad_rule, backend=backend, window=window, qw=qw, n_a=n_a)
    y = y.reshape(*lead, N)
    return y + bias if bias is not None and inner_bias is None else y


def approx_matmul(a_codes: torch.Tensor, w_codes: torch.Tensor,
                  lut: MultiplierLUT | LUTTensors, *,
                  backend: Backend | str = Backend.AUTO) -> torch.Tensor:
    """out[m, n] = sum_k LUT[a[m, k], w[k, n]] exactly (int64), for integer code tensors.

    Codes follow DESIGN.md: unsigned 0..2^b-1, signed -2^(b-1)..2^(b-1)-1. Codes outside the
    LUT's range raise LUTError.
    """
    if a_codes.ndim != 2 or w_codes.ndim != 2 or a_codes.shape[1] != w_codes.shape[0]:
        raise ConfigError(f"approx_matmul needs (M, K) and (K, N) code tensors, got "
                          f"{tuple(a_codes.shape)} and {tuple(w_codes.shape)}")
    if a_codes.is_floating_point() or w_codes.is_floating_point():
        raise ConfigError("approx_matmul takes integer code tensors, not floats")
    lut_t = lut if isinstance(lut, LUTTensors) else LUTTensors.from_lut(lut, a_codes.device)
    for name, codes, bits in (("activation", a_codes, lut_t.a_bits), ("weight", w_codes, lut_t.w_bits)):
        lo = -(1 << (bits - 1)) if lut_t.signed else 0
        hi = lo + (1 << bits) - 1
        if codes.numel() and (int(codes.min()) < lo or int(codes.max()) > hi):
            raise LUTError(f"{name} codes span [{int(codes.min())}, {int(codes.max())}], outside "
                           f"[{lo}, {hi}] of the {bits}-bit {'signed' if lut_t.signed else 'unsigned'} LUT")
    impl = get_backend(backend, a_codes.device)
    a_idx = (a_codes.to(torch.int64) + lut_t.a_offset)[:, None, :]
    w_idx = (w_codes.to(torch.int64) + lut_t.w_offset)[None]
    return impl.lut_gemm(a_idx, w_idx, lut_t.table.to(a_codes.device))[:, 0, :]
