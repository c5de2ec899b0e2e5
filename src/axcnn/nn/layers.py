"""``ApproxConv2d`` and ``ApproxLinear``: a quantized/approximate layer *is* its torch layer.

Both keep their parent's parameters and state_dict keys (plus the activation observer's
buffers), so exact checkpoints load into them and they convert back and forth in place.
``mode`` selects the forward:

- ``Mode.EXACT``: the plain float layer;
- ``Mode.QUANTIZED``: integer codes with exact products (the 8-bit reference);
- ``Mode.APPROXIMATE``: products through the layer's LUT.

The LUT is validated and turned into device buffers once, in :meth:`set_lut`; ``forward``
does no I/O.

Eval-mode cache: while the layer is in eval mode and its observer is not calibrating, the
activation qparams (with n_a as a Python float), the weight qparams and the weight codes are
computed once and reused, so an inference forward never waits for the GPU and the backend sees
the same weight-code tensor on every call (GPU backends cache weight-side tables by it). The
cache is rebuilt when the weight (identity, storage, version counter) or the observer's range
buffers change, and dropped on train()/eval(), ``.to()``, load_state_dict, configure() and
set_lut(). Writes through ``weight.data`` bypass the version counter: call
:meth:`invalidate_eval_cache` after them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..choices import Choice
from ..errors import ConfigError
from ..lut import DEFAULT_WINDOW, MultiplierLUT, gradient_tables
from ..ops import Backend, GradRule, LUTTensors, approx_conv2d, approx_linear, check_lut_matches
from ..ops.functional import quantize_weight
from ..quant import ActivationObserver, QuantSpec, weight_qparams


class Mode(Choice):
    EXACT = "exact"
    QUANTIZED = "quantized"
    APPROXIMATE = "approximate"


@dataclass
class _EvalState:
    """What an eval-mode forward reuses; ``key`` says which weight/observer state it is for,
    ``refs`` keeps the keyed objects alive so that their ids stay unique."""

    key: tuple
    refs: tuple
    a_qparams: tuple[torch.Tensor, torch.Tensor]
    w_qparams: tuple[torch.Tensor, torch.Tensor]
    qw: torch.Tensor
    n_a: float


def _version(t: torch.Tensor) -> int | None:
    """The version counter of ``t`` (None for inference tensors, which have none)."""
    return None if t.is_inference() else t._version


class _ApproxMixin:
    """State and behaviour shared by the approximate layers."""

    def _init_approx(self) -> None:
        self.mode = Mode.EXACT
        self.spec = QuantSpec()
        self.grad_rule = GradRule.STE
        self.backend = Backend.AUTO
        self.window = DEFAULT_WINDOW
        self.lut: MultiplierLUT | None = None
        self.layer_name = ""
        self.recorder = None  # set by axcnn.nn.record_operands while recording
        self.act_observer = ActivationObserver()
        self.register_buffer("lut_table", None, persistent=False)
        self.register_buffer("lut_grad_a", None, persistent=False)
        self.register_buffer("lut_grad_w", None, persistent=False)
        self._eval_state: _EvalState | None = None

    def configure(self, mode: Mode | str = Mode.QUANTIZED, spec: QuantSpec | None = None,
                  lut: MultiplierLUT | None = None, grad_rule: GradRule | str = GradRule.STE,
                  backend: Backend | str = Backend.AUTO, window: int = DEFAULT_WINDOW):
        """Set mode, operand format, LUT, gradient rule and backend in one validated step."""
        mode = Mode.parse(mode)
        self.invalidate_eval_cache()
        self.spec = spec or self.spec
        self.grad_rule = GradRule.parse(grad_rule)
        self.backend = Backend.parse(backend)
        self.window = window
        if mode is Mode.APPROXIMATE and lut is None and self.lut is None:
            raise ConfigError(f"layer '{self.layer_name or type(self).__name__}' is set to "
                              "approximate mode but has no LUT")
        if lut is not None:
            self.set_lut(lut)
        elif self.lut is not None:
            self.set_lut(self.lut)  # re-check against the new spec, rebuild gradient tables
        self.mode = mode
        return self

    def set_lut(self, lut: MultiplierLUT) -> None:
        check_lut_matches(lut, self.spec, f"layer '{self.layer_name or type(self).__name__}'")
        self.invalidate_eval_cache()
        device = self.weight.device
        self.lut = lut
        self.lut_table = torch.from_numpy(lut.table.copy()).to(device)
        if self.grad_rule is GradRule.ERROR_AWARE:
            ga, gw = gradient_tables(lut, self.window)
            self.lut_grad_a = torch.from_numpy(ga).to(device)
            self.lut_grad_w = torch.from_numpy(gw).to(device)
        else:
            self.lut_grad_a = self.lut_grad_w = None

    def _lut_tensors(self) -> LUTTensors | None:
        if self.mode is not Mode.APPROXIMATE:
            return None
        return LUTTensors(self.lut_table, self.lut.signed, self.lut.a_bits, self.lut.w_bits,
                          self.lut_grad_a, self.lut_grad_w, self.window)

    def _adopt(self, src: nn.Module):
        """Take over the parameters and train/eval state of the layer being replaced."""
        self.weight = src.weight
        self.bias = src.bias
        self.act_observer.to(src.weight.device)
        self.train(src.training)
        return self

    # ---- eval-mode cache ----------------------------------------------------------------------
    def invalidate_eval_cache(self) -> None:
        """Forget the cached eval-mode qparams and weight codes (rebuilt on the next forward)."""
        self._eval_state = None

    def train(self, mode: bool = True):
        self.invalidate_eval_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self.invalidate_eval_cache()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self.invalidate_eval_cache()
        super()._load_from_state_dict(*args, **kwargs)

    def _conv_weight(self) -> torch.Tensor:
        """The weight in the shape the conv kernels see (OC, C/groups, kh, kw)."""
        return self.weight

    def _eval_key(self) -> tuple | None:
        obs = self.act_observer
        w, lo, hi = self.weight, obs.min_val, obs.max_val
        versions = (_version(w), _version(lo), _version(hi))
        if None in versions:
            return None
        return (id(w), w.data_ptr(), id(lo), id(hi), *versions, self.spec)

    def _cached_eval_state(self) -> _EvalState:
        """Activation/weight qparams and weight codes for inference, rebuilt when stale."""
        key = self._eval_key()
        st = self._eval_state
        if st is not None and key is not None and st.key == key:
            return st
        spec, obs = self.spec, self.act_observer
        # normal (not inference-mode) tensors, so that they carry version counters
        with torch.no_grad(), torch.inference_mode(False):
            a_q = obs.qparams(spec.a_bits, spec.signed, self.layer_name)
            w_q = weight_qparams(self.weight, spec.w_bits, spec.signed, spec.per_channel)
            qw = quantize_weight(self._conv_weight(), w_q, spec)
        st = _EvalState(key, (self.weight, obs.min_val, obs.max_val), a_q, w_q, qw,
                        float(a_q[1]))  # the one host sync, once per cache fill
        self._eval_state = st if key is not None else None
        return st

    def _approx_forward(self, op, x: torch.Tensor, *geometry) -> torch.Tensor:
        """Quantized/approximate forward through ``op`` (approx_conv2d or approx_linear)."""
        obs = self.act_observer
        if self.training or obs.updating:
            self._eval_state = None
            obs(x)
            a_q = obs.qparams(self.spec.a_bits, self.spec.signed, self.layer_name)
            w_q = weight_qparams(self.weight, self.spec.w_bits, self.spec.signed,
                                 self.spec.per_channel)
            qw = n_a = None
        else:
            st = self._cached_eval_state()
            a_q, w_q, qw, n_a = st.a_qparams, st.w_qparams, st.qw, st.n_a
        if self.recorder is not None:
            self.recorder.observe(self, x, a_q, w_q, n_a=n_a, qw=qw)
        return op(x, self.weight, self.bias, *geometry, a_qparams=a_q, w_qparams=w_q, spec=self.spec,
                  lut=self._lut_tensors(), grad_rule=self.grad_rule, backend=self.backend,
                  qw=qw, n_a=n_a)

    def approx_repr(self) -> str:
        text = f"mode={self.mode.value}"
        if self.mode is not Mode.EXACT:
            text += f", bits={self.spec.label}"
            if self.spec.per_channel:
                text += ", per_channel"
        if self.mode is Mode.APPROXIMATE and self.lut is not None:
            text += f", lut={self.lut.name}, grad={self.grad_rule.value}"
        return text


class ApproxConv2d(_ApproxMixin, nn.Conv2d):
    """``nn.Conv2d`` with quantized and approximate modes (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_approx()

    @classmethod
    def from_module(cls, conv: nn.Conv2d) -> "ApproxConv2d":
        if isinstance(conv.padding, str):
            raise ConfigError(f"conv padding '{conv.padding}' is not supported; use explicit sizes")
        if conv.padding_mode != "zeros":
            raise ConfigError(f"padding_mode '{conv.padding_mode}' is not supported; only zeros")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                  conv.dilation, conv.groups, conv.bias is not None, device="meta")
        return new._adopt(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is Mode.EXACT:
            return super().forward(x)
        return self._approx_forward(approx_conv2d, x, self.stride, self.padding, self.dilation,
                                    self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + self.approx_repr()


class ApproxLinear(_ApproxMixin, nn.Linear):
    """``nn.Linear`` with quantized and approximate modes (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_approx()

    @classmethod
    def from_module(cls, lin: nn.Linear) -> "ApproxLinear":
        new = cls(lin.in_features, lin.out_features, lin.bias is not None, device="meta")
        return new._adopt(lin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is Mode.EXACT:
            return super().forward(x)
        return self._approx_forward(approx_linear, x)

    def _conv_weight(self) -> torch.Tensor:
        return self.weight.reshape(self.weight.shape[0], -1, 1, 1)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + self.approx_repr()


APPROX_LAYERS = (ApproxConv2d, ApproxLinear)


def approx_layers(model: nn.Module):
    """(name, layer) of every approximate layer of ``model``, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, APPROX_LAYERS)]
