"""The eval-mode cache of the approximate layers: used while nothing changes, rebuilt otherwise,
and bit-identical to a layer that computes everything afresh."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from axcnn.lut import builtin
from axcnn.models import create_model
from axcnn.nn import ApproxConv2d, ApproxLinear, ConversionPlan, Mode, approx_layers, convert_
from axcnn.nn import layers as layers_mod
from axcnn.ops.torch_backend import TorchBackend
from axcnn.quant import QuantSpec, calibrate


@pytest.fixture
def qparam_calls(monkeypatch):
    """Counts weight_qparams calls made by the layers."""
    calls = []
    orig = layers_mod.weight_qparams

    def spy(*args, **kw):
        calls.append(1)
        return orig(*args, **kw)

    monkeypatch.setattr(layers_mod, "weight_qparams", spy)
    return calls


@pytest.fixture
def seen_qw(monkeypatch):
    """The weight-code tensors the torch backend receives."""
    seen = []
    orig = TorchBackend.conv2d_acc

    def spy(self, p):
        seen.append(p.qw)
        return orig(self, p)

    monkeypatch.setattr(TorchBackend, "conv2d_acc", spy)
    return seen


def small_model(spec=QuantSpec(), mode=Mode.APPROXIMATE, lut="drum4"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                          nn.Conv2d(5, 4, 3, stride=2, groups=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 6))
    lut_obj = builtin(lut, bits=spec.a_bits, signed=spec.signed) if mode is Mode.APPROXIMATE else None
    convert_(model, ConversionPlan(mode=mode, spec=spec, lut=lut_obj, include_linear=True))
    return model


def inputs(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 8, 8, generator=g) for _ in range(n)]


def fresh_output(model, x):
    """The output of an independent copy whose caches start empty."""
    clone = copy.deepcopy(model)
    for _, m in approx_layers(clone):
        m.invalidate_eval_cache()
    with torch.no_grad():
        return clone(x)


@pytest.mark.parametrize("spec", [QuantSpec(), QuantSpec(4, 4, True, True)])
@pytest.mark.parametrize("mode", [Mode.QUANTIZED, Mode.APPROXIMATE])
def test_cache_is_used_and_bit_identical(spec, mode, qparam_calls, seen_qw):
    model = small_model(spec, mode, "mitchell")
    xs = inputs()
    calibrate(model, xs)
    model.eval()
    qparam_calls.clear()
    layers = [m for _, m in approx_layers(model)]
    # the uncached reference: the functional path with everything computed per call
    with torch.no_grad():
        want = [model(x) for x in xs]
    assert len(qparam_calls) == len(layers)          # once per layer, then reused
    qparam_calls.clear()
    seen_qw.clear()
    with torch.no_grad():
        got = [model(x) for x in xs]
    assert qparam_calls == []
    # the backend sees the same weight-code tensor object on every call
    per_call = len(layers)
    for i in range(per_call):
        assert all(seen_qw[i] is seen_qw[i + k * per_call] for k in range(len(xs)))
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    # bit-identical to computing everything afresh each call (cache dropped before each call)
    for x, w in zip(xs, want):
        for m in layers:
            m.invalidate_eval_cache()
        with torch.no_grad():
            assert torch.equal(model(x), w)
    # also with gradients enabled (same forward, through the autograd function)
    y = model(xs[0])
    assert torch.equal(y.detach(), want[0])


def test_training_mode_does_not_cache(qparam_calls):
    model = small_model()
    xs = inputs()
    model.train()
    for x in xs:
        model(x)
    assert len(qparam_calls) == 3 * len(approx_layers(model))
    assert all(m._eval_state is None for _, m in approx_layers(model))


def test_calibration_does_not_cache_and_invalidates():
    model = small_model()
    xs = inputs()
    calibrate(model, xs[:1])
    model.eval()
    with torch.no_grad():
        model(xs[0])
    states = [m._eval_state for _, m in approx_layers(model)]
    assert all(s is not None for s in states)
    calibrate(model, xs[1:], reset=False)
    with torch.no_grad():
        y = model(xs[0])
    assert all(m._eval_state is not s for (_, m), s in zip(approx_layers(model), states))
    assert torch.equal(y, fresh_output(model, xs[0]))


def test_in_place_weight_change_invalidates():
    model = small_model()
    xs = inputs()
    calibrate(model, xs)
    model.eval()
    with torch.no_grad():
        before = model(xs[0])
        conv = model[0]
        conv.weight.mul_(1.5)              # in place: the version counter moves
        after = model(xs[0])
    assert not torch.equal(after, before)
    assert torch.equal(after, fresh_output(model, xs[0]))


def test_optimizer_step_invalidates():
    model = small_model()
    xs = inputs()
    calibrate(model, xs)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.eval()
    with torch.no_grad():
        before = model(xs[0])
    model(xs[0]).square().mean().backward()
    opt.step()
    with torch.no_grad():
        after = model(xs[0])
    assert not torch.equal(after, before)
    assert torch.equal(after, fresh_output(model, xs[0]))


def test_replaced_weight_and_data_writes():
    model = small_model()
    xs = inputs()
    calibrate(model, xs)
    model.eval()
    lin = model[6]
    with torch.no_grad():
        model(xs[0])
        lin.weight = nn.Parameter(lin.weight.detach() * -1.0)   # a new tensor
        y = model(xs[0])
    assert torch.equal(y, fresh_output(model, xs[0]))
    with torch.no_grad():
        lin.weight.data.mul_(0.5)          # .data bypasses the version counter ...
        lin.invalidate_eval_cache()         # ... so the cache is dropped by hand
        y = model(xs[0])
    assert torch.equal(y, fresh_output(model, xs[0]))


def test_load_state_dict_train_eval_configure_and_set_lut_invalidate():
    model = small_model()
    xs = inputs()
    calibrate(model, xs)
    model.eval()
    layer = model[3]

    def run():
        with torch.no_grad():
            model(xs[0])
        return layer._eval_state

    first = run()
    assert run() is first
    model.train()
    model.eval()
    second = run()
    assert second is not first
    other = small_model()
    calibrate(other, xs[1:])
    model.load_state_dict(other.state_dict())
    assert layer._eval_state is None
    third = run()
    with torch.no_grad():
        assert torch.equal(model(xs[0]), fresh_output(other.eval(), xs[0]))
    layer.set_lut(builtin("mitchell"))
    assert layer._eval_state is None
    run()
    layer.configure(Mode.APPROXIMATE, QuantSpec(6, 6), builtin("mitchell", bits=6))
    assert layer._eval_state is None
    with torch.no_grad():
        y = model(xs[0])
    assert layer._eval_state.qw.max() <= 63 and third is not layer._eval_state
    assert torch.equal(y, fresh_output(model, xs[0]))
    # a spec assigned directly (no configure) is part of the cache key
    layer.mode = Mode.QUANTIZED
    layer.spec = QuantSpec(5, 5)
    with torch.no_grad():
        y = model(xs[0])
    assert layer._eval_state.qw.max() <= 31
    assert torch.equal(y, fresh_output(model, xs[0]))


def test_observer_reset_invalidates_and_raises():
    model = small_model()
    calibrate(model, inputs())
    model.eval()
    with torch.no_grad():
        model(inputs()[0])
        model[0].act_observer.reset()
        with pytest.raises(Exception, match="no range"):
            model(inputs()[0])


def test_linear_cache_uses_conv_shaped_codes(seen_qw):
    torch.manual_seed(2)
    lin = ApproxLinear.from_module(nn.Linear(7, 3)).configure(Mode.APPROXIMATE, lut=builtin("drum4"))
    x = torch.randn(2, 5, 7)
    calibrate(lin, [x])
    lin.eval()
    seen_qw.clear()
    with torch.no_grad():
        y1, y2 = lin(x), lin(x)
    assert seen_qw[0] is seen_qw[1] and seen_qw[0].shape == (3, 7, 1, 1)
    lin.invalidate_eval_cache()
    with torch.no_grad():
        assert torch.equal(lin(x), y1) and torch.equal(y1, y2)


def test_resnet8_eval_cache_matches_fresh():
    torch.manual_seed(0)
    model = create_model("resnet8")
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut=builtin("drum4"),
                                   first_layer=Mode.QUANTIZED))
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 3, 32, 32, generator=g) for _ in range(2)]
    calibrate(model, xs)
    model.eval()
    with torch.no_grad():
        a = [model(x) for x in xs]
        b = [model(x) for x in xs]
    for x, y, z in zip(xs, a, b):
        assert torch.equal(y, z)
        assert torch.equal(y, fresh_output(model, x))
    conv = next(m for _, m in approx_layers(model) if isinstance(m, ApproxConv2d))
    assert conv._eval_state is not None


@pytest.mark.parametrize("spec", [QuantSpec(), QuantSpec(4, 4, True, True), QuantSpec(6, 5)])
def test_cached_layers_equal_the_uncached_functional_path(spec):
    from axcnn.ops import approx_conv2d, approx_linear
    from axcnn.quant import weight_qparams

    torch.manual_seed(5)
    lut = builtin("mitchell", bits=spec.a_bits, signed=spec.signed) if spec.a_bits == spec.w_bits else None
    mode = Mode.APPROXIMATE if lut is not None else Mode.QUANTIZED
    conv = ApproxConv2d.from_module(nn.Conv2d(3, 4, 3, padding=1, stride=2)).configure(mode, spec, lut)
    lin = ApproxLinear.from_module(nn.Linear(6, 5)).configure(mode, spec, lut)
    for layer, x, op, geo in ((conv, torch.randn(2, 3, 7, 7), approx_conv2d, (conv.stride, conv.padding)),
                              (lin, torch.randn(3, 2, 6), approx_linear, ())):
        calibrate(layer, [x, x * 2])
        layer.eval()
        a_q = layer.act_observer.qparams(spec.a_bits, spec.signed)
        w_q = weight_qparams(layer.weight, spec.w_bits, spec.signed, spec.per_channel)
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                want = op(x, layer.weight, layer.bias, *geo, a_qparams=a_q, w_qparams=w_q,
                          spec=spec, lut=lut)
                for _ in range(2):
                    assert torch.equal(layer(x), want)
