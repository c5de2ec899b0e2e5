"""The inference fast path: fused dequantisation where the backend has it, precomputed weight
codes and zero points, bit-identical results; on CUDA no host sync in an eval forward.

The fused path is checked on the CPU with a stand-in backend and, end to end through the Triton
kernels, under Triton's interpreter (a child process, as in test_gpu_triton_interpreter.py).
The no-sync checks need CUDA (``gpu`` marker).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from torch import nn

from axcnn.lut import builtin
from axcnn.ops import Backend, approx_conv2d, approx_linear, functional
from axcnn.ops.functional import _dequant_acc, quantize_weight
from axcnn.ops.torch_backend import TorchBackend
from axcnn.quant import QuantSpec, qparams_from_range, weight_qparams

HAVE_TRITON = importlib.util.find_spec("triton") is not None
INNER = os.environ.get("AXCNN_NOSYNC_INTERPRETER_RUN") == "1"


class FusedSpy(TorchBackend):
    """The torch backend plus a ``conv2d_dequant`` with the reference semantics; records calls."""

    def __init__(self):
        self.calls = []

    def conv2d_acc(self, p):
        self.calls.append(("acc", p))
        return super().conv2d_acc(p)

    def conv2d_dequant(self, p, s_a, s_w, bias=None):
        self.calls.append(("dequant", p))
        y = _dequant_acc(TorchBackend.conv2d_acc(self, p), s_a, s_w)
        return y if bias is None else y + bias.view(1, -1, 1, 1)


@pytest.fixture
def spy(monkeypatch):
    """The spy stands in for Backend.AUTO; named backends stay what they are."""
    impl = FusedSpy()
    orig = functional.get_backend

    def get(kind, device="cpu"):
        return impl if Backend.parse(kind) is Backend.AUTO else orig(kind, device)

    monkeypatch.setattr(functional, "get_backend", get)
    return impl


def _operands(seed=0, signed=False, per_channel=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 6, 6, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g) * 0.2
    b = torch.randn(5, generator=g)
    spec = QuantSpec(8, 8, signed, per_channel)
    a_q = qparams_from_range(x.min(), x.max(), 8, signed)
    w_q = weight_qparams(w, 8, signed, per_channel)
    return x, w, b, spec, a_q, w_q


@pytest.mark.parametrize("signed,per_channel", [(False, False), (True, True)])
def test_fused_dequant_is_used_without_grad_and_matches(spy, signed, per_channel):
    x, w, b, spec, a_q, w_q = _operands(1, signed, per_channel)
    lut = builtin("drum4", signed=signed)
    kw = dict(a_qparams=a_q, w_qparams=w_q, spec=spec, lut=lut)
    want = approx_conv2d(x, w, b, 1, 1, backend="torch", **kw)
    with torch.no_grad():
        got = approx_conv2d(x, w, b, 1, 1, **kw)
    assert [c[0] for c in spy.calls] == ["dequant"]
    assert torch.equal(got, want)
    # precomputed codes and zero point: the backend sees exactly that tensor
    qw = quantize_weight(w, w_q, spec)
    spy.calls.clear()
    with torch.no_grad():
        got = approx_conv2d(x, w, b, 1, 1, qw=qw, n_a=float(a_q[1]), **kw)
    assert spy.calls[0][1].qw is qw and spy.calls[0][1].n_a == float(a_q[1])
    assert spy.calls[0][1].signed is signed
    assert torch.equal(got, want)
    # without autograd needs (no input requires grad) the fused path runs too
    spy.calls.clear()
    assert torch.equal(approx_conv2d(x, w, b, 1, 1, **kw), want)
    assert [c[0] for c in spy.calls] == ["dequant"]


def test_unfused_when_grad_is_needed_or_dtype_differs(spy):
    x, w, b, spec, a_q, w_q = _operands(2)
    kw = dict(a_qparams=a_q, w_qparams=w_q, spec=spec, lut=builtin("drum4"))
    wp = w.clone().requires_grad_()
    y = approx_conv2d(x, wp, b, 1, 1, **kw)
    assert [c[0] for c in spy.calls] == ["acc"] and y.requires_grad
    y.sum().backward()
    assert wp.grad is not None
    spy.calls.clear()
    with torch.no_grad():
        approx_conv2d(x.double(), w, b, 1, 1, **kw)       # float64 input: unfused
        approx_conv2d(x, w, b.double(), 1, 1, **kw)       # float64 bias: unfused
    assert [c[0] for c in spy.calls] == ["acc", "acc"]


def test_linear_bias_goes_into_the_fused_conv(spy):
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(3, 4, 7, generator=g), torch.randn(5, 7, generator=g), torch.randn(5, generator=g)
    a_q = qparams_from_range(x.min(), x.max(), 8, False)
    w_q = weight_qparams(w, 8, False, False)
    kw = dict(a_qparams=a_q, w_qparams=w_q, lut=builtin("mitchell"))
    want = approx_linear(x, w, b, backend="torch", **kw)
    with torch.no_grad():
        got = approx_linear(x, w, b, **kw)
    assert [c[0] for c in spy.calls] == ["dequant"]
    assert torch.equal(got, want)
    qw = quantize_weight(w.reshape(5, 7, 1, 1), w_q, QuantSpec())
    with torch.no_grad():
        assert torch.equal(approx_linear(x, w, b, qw=qw, n_a=float(a_q[1]), **kw), want)
    with pytest.raises(Exception, match="precomputed weight codes"):
        approx_linear(x, w, b, qw=qw[:, :3], **kw)


# --- end to end through the Triton kernels, under the interpreter -----------------------------

@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed")
@pytest.mark.skipif(INNER, reason="driver of the interpreter run")
def test_fused_layers_under_the_triton_interpreter():
    from ops_problems import run_inner_tests_under_interpreter

    run_inner_tests_under_interpreter(__file__, "AXCNN_NOSYNC_INTERPRETER_RUN")


inner = pytest.mark.skipif(not INNER, reason="runs inside the interpreter child process")


def _tiny_model(spec: QuantSpec, lut_name: str, backend: str):
    from axcnn.nn import ConversionPlan, Mode, convert_

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False), nn.ReLU(),
                          nn.Conv2d(6, 4, 1, stride=2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    lut = builtin(lut_name, bits=spec.a_bits, signed=spec.signed)
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, spec=spec, lut=lut, include_linear=True,
                                   first_layer=Mode.QUANTIZED, backend=backend))
    return model


@inner
@pytest.mark.parametrize("spec,lut_name", [(QuantSpec(), "drum4"), (QuantSpec(8, 8, True, True), "mitchell"),
                                           (QuantSpec(4, 4, False), "trunc3")])
def test_inner_fused_model_equals_torch_backend(spec, lut_name, monkeypatch):
    from axcnn.nn import approx_layers
    from axcnn.ops import get_backend
    from axcnn.quant import calibrate

    fused = []
    for kind in ("triton", "decomposed"):
        cls = type(get_backend(kind, "cpu"))
        orig = cls.conv2d_dequant

        def counting(self, *a, _orig=orig, **k):
            fused.append(type(self).__name__)
            return _orig(self, *a, **k)

        monkeypatch.setattr(cls, "conv2d_dequant", counting)

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 6, 6, generator=g) for _ in range(2)]
    ref = _tiny_model(spec, lut_name, "torch")
    calibrate(ref, xs)
    ref.eval()
    with torch.no_grad():
        want = [ref(x) for x in xs]
    for backend in ("triton", "decomposed"):
        model = _tiny_model(spec, lut_name, backend)
        model.load_state_dict(ref.state_dict())
        model.eval()
        if backend == "decomposed" and lut_name == "mitchell":
            for _, m in approx_layers(model):
                m.backend = Backend.TRITON  # mitchell has no cheap exact factorisation
        for _ in range(2):
            with torch.no_grad():
                for x, w in zip(xs, want):
                    assert torch.equal(model(x), w), backend
        # the gradient path (unfused) agrees as well
        n = len(fused)
        assert torch.equal(model(xs[0]).detach(), want[0])
        assert len(fused) == n
    assert len(fused) >= 2 * 2 * 2 * len(approx_layers(ref))


# --- CUDA: no host sync in the eval forward ------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

BACKENDS = [
    # the torch backend reads a LUT's range once per LUT tensor (torch_backend.table_range)
    pytest.param("torch"),
    pytest.param("triton", marks=pytest.mark.skipif(not HAVE_TRITON, reason="no Triton")),
    pytest.param("auto", marks=pytest.mark.skipif(not HAVE_TRITON, reason="no Triton")),
]


def _cuda_resnet8(backend: str, first_layer=None):
    from axcnn.models import create_model
    from axcnn.nn import ConversionPlan, Mode, convert_
    from axcnn.quant import calibrate

    torch.manual_seed(0)
    model = create_model("resnet8").cuda()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut=builtin("drum4"), backend=backend,
                                   first_layer=first_layer))
    g = torch.Generator(device="cuda").manual_seed(0)
    calibrate(model, [torch.randn(64, 3, 32, 32, device="cuda", generator=g) for _ in range(2)])
    return model.eval()


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("first_layer", [None, "quantized"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_eval_forward_does_not_sync(backend, first_layer):
    """Eval forwards of a converted, calibrated ResNet-8 never wait for the GPU."""
    from axcnn.nn import Mode

    model = _cuda_resnet8(backend, None if first_layer is None else Mode.parse(first_layer))
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(256, 3, 32, 32, device="cuda", generator=g)
    with torch.no_grad():
        first = model(x)           # fills the layers' and backends' caches, compiles kernels
        model(x)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            outs = [model(x) for _ in range(3)]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for y in outs:
        assert torch.equal(y, first)


@pytest.mark.gpu
@needs_cuda
def test_cuda_observer_update_does_not_sync_and_keeps_the_ema():
    from axcnn.quant import ActivationObserver

    gen = torch.Generator().manual_seed(3)
    xs = [(torch.randn(1000, generator=gen) * (i + 1)).cuda() for i in range(6)]
    obs = ActivationObserver().cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in xs:
            obs(x)
        obs.qparams(8, False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    # the former update (Python branch, in place), on the same device
    lo_ref, hi_ref = torch.zeros((), device="cuda"), torch.zeros((), device="cuda")
    for i, x in enumerate(xs):
        lo, hi = torch.aminmax(x)
        if i:
            lo_ref.mul_(0.9).add_(0.1 * lo.float())
            hi_ref.mul_(0.9).add_(0.1 * hi.float())
        else:
            lo_ref.copy_(lo)
            hi_ref.copy_(hi)
    assert torch.equal(obs.min_val, lo_ref) and torch.equal(obs.max_val, hi_ref)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("rule", ["ste", "error_aware"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_training_step_does_not_sync(backend, rule):
    """Forward and backward of a training step keep the activation zero point on the device
    (IntConvProblem.n_a as a tensor): the host never waits for the GPU inside a step."""
    from axcnn.models import create_model
    from axcnn.nn import ConversionPlan, Mode, convert_
    from axcnn.quant import calibrate

    torch.manual_seed(0)
    model = create_model("resnet8").cuda()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut=builtin("drum4"), backend=backend,
                                   grad_rule=rule, window=4))
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(64, 3, 32, 32, device="cuda", generator=g)
    y = torch.randint(0, 10, (64,), device="cuda", generator=g)
    calibrate(model, [x])
    model.train()
    for _ in range(2):                 # compiles kernels, fills the LUT and gradient-basis caches
        torch.nn.functional.cross_entropy(model(x), y).backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
