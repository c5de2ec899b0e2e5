"""ApproxConv2d / ApproxLinear: parameters, state_dict, modes, configuration, no I/O in forward."""

from __future__ import annotations

import builtins
import io
import os

import numpy as np
import pytest
import torch
from torch import nn

from axcnn.errors import ConfigError, LUTError
from axcnn.lut import builtin, load_lut, save_lut
from axcnn.nn import ApproxConv2d, ApproxLinear, GradRule, Mode, approx_layers
from axcnn.ops import approx_conv2d, approx_linear
from axcnn.quant import QuantSpec, calibrate, weight_qparams

OBSERVER_KEYS = {"act_observer.min_val", "act_observer.max_val", "act_observer.initialized"}


def conv_and_input(seed=0, **kw):
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=1, **kw)
    x = torch.randn(2, 3, 6, 6)
    return conv, x


def test_mode_parse():
    assert Mode.parse("Approximate") is Mode.APPROXIMATE
    assert Mode.parse(Mode.EXACT) is Mode.EXACT
    with pytest.raises(ConfigError, match="unknown mode"):
        Mode.parse("approx")


@pytest.mark.parametrize("bias", [True, False])
def test_conv_from_module_shares_parameters_and_keys(bias):
    conv, _ = conv_and_input(bias=bias)
    conv.eval()
    layer = ApproxConv2d.from_module(conv)
    assert isinstance(layer, nn.Conv2d)
    assert layer.weight is conv.weight
    assert layer.bias is conv.bias
    assert not layer.training
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(layer, attr) == getattr(conv, attr)
    assert set(layer.state_dict()) == set(conv.state_dict()) | OBSERVER_KEYS
    layer.configure(Mode.APPROXIMATE, lut=builtin("drum4"), grad_rule=GradRule.ERROR_AWARE)
    keys = set(layer.state_dict())
    assert keys == set(conv.state_dict()) | OBSERVER_KEYS
    assert not any("lut" in k for k in keys)
    assert layer.lut_table is not None and layer.lut_grad_a is not None
    # an exact checkpoint loads (only the observer buffers are missing)
    res = layer.load_state_dict(conv.state_dict(), strict=False)
    assert set(res.missing_keys) == OBSERVER_KEYS and not res.unexpected_keys


def test_linear_from_module_shares_parameters_and_keys():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    layer = ApproxLinear.from_module(lin)
    assert isinstance(layer, nn.Linear)
    assert layer.weight is lin.weight and layer.bias is lin.bias
    layer.configure(Mode.APPROXIMATE, lut=builtin("drum4"))
    assert set(layer.state_dict()) == {"weight", "bias"} | OBSERVER_KEYS


def test_state_dict_round_trip_keeps_observer():
    conv, x = conv_and_input()
    layer = ApproxConv2d.from_module(conv).configure(Mode.QUANTIZED)
    layer.train()
    y = layer(x)
    fresh = ApproxConv2d(3, 4, 3, padding=1).configure(Mode.QUANTIZED)
    fresh.load_state_dict(layer.state_dict())
    fresh.eval()
    layer.eval()
    assert bool(fresh.act_observer.initialized)
    assert torch.equal(fresh(x), layer(x))
    assert torch.equal(layer(x), y)  # eval: the observer does not move


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, groups=1, dilation=2)])
def test_exact_mode_equals_plain_conv(kw):
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, padding=2, **kw)
    x = torch.randn(2, 4, 7, 7)
    layer = ApproxConv2d.from_module(conv)
    assert layer.mode is Mode.EXACT
    assert torch.equal(layer(x), conv(x))
    layer.configure(Mode.APPROXIMATE, lut=builtin("drum4"))
    layer.configure(Mode.EXACT)
    assert torch.equal(layer(x), conv(x))
    lin = nn.Linear(4, 2)
    al = ApproxLinear.from_module(lin)
    v = torch.randn(3, 4)
    assert torch.equal(al(v), lin(v))


def test_quantized_and_approximate_forward_match_functional():
    conv, x = conv_and_input()
    layer = ApproxConv2d.from_module(conv).configure(Mode.QUANTIZED, QuantSpec(4, 4, True, True))
    calibrate(layer, [x])
    a_q = layer.act_observer.qparams(4, True)
    w_q = weight_qparams(layer.weight, 4, True, True)
    kwargs = dict(a_qparams=a_q, w_qparams=w_q, spec=layer.spec)
    expect = approx_conv2d(x, conv.weight, conv.bias, 1, 1, **kwargs)
    assert torch.equal(layer(x), expect)
    lut = builtin("mitchell", bits=4, signed=True)
    layer.configure(Mode.APPROXIMATE, lut=lut)
    expect = approx_conv2d(x, conv.weight, conv.bias, 1, 1, lut=lut, **kwargs)
    assert torch.equal(layer(x), expect)
    assert not torch.equal(layer(x), layer.configure(Mode.QUANTIZED)(x))
    # quantized output is close to the float conv
    assert torch.allclose(layer(x), conv(x), atol=0.15 * conv(x).abs().max().item())


def test_linear_modes():
    torch.manual_seed(4)
    lin = nn.Linear(6, 3)
    x = torch.randn(2, 5, 6)
    layer = ApproxLinear.from_module(lin).configure(Mode.APPROXIMATE, lut=builtin("drum4"))
    calibrate(layer, [x])
    y = layer(x)
    assert y.shape == (2, 5, 3)
    a_q = layer.act_observer.qparams(8, False)
    w_q = weight_qparams(lin.weight, 8, False, False)
    assert torch.equal(y, approx_linear(x, lin.weight, lin.bias, a_qparams=a_q, w_qparams=w_q,
                                        lut=builtin("drum4")))


def test_eval_without_calibration_raises():
    conv, x = conv_and_input()
    layer = ApproxConv2d.from_module(conv).configure(Mode.QUANTIZED)
    layer.layer_name = "features.0"
    layer.eval()
    with pytest.raises(ConfigError, match="features.0"):
        layer(x)
    layer.train()
    assert torch.isfinite(layer(x)).all()   # QAT: the first batch sets the range


def test_configure_validation():
    conv, _ = conv_and_input()
    layer = ApproxConv2d.from_module(conv)
    with pytest.raises(ConfigError, match="no LUT"):
        layer.configure(Mode.APPROXIMATE)
    with pytest.raises(LUTError):
        layer.configure(Mode.APPROXIMATE, QuantSpec(4, 4), lut=builtin("drum4", bits=8))
    with pytest.raises(LUTError):
        layer.configure(Mode.APPROXIMATE, QuantSpec(8, 8, signed=False), lut=builtin("drum4", signed=True))
    with pytest.raises(ConfigError):
        layer.configure("fast")
    with pytest.raises(ConfigError):
        layer.configure(Mode.QUANTIZED, grad_rule="magic")
    with pytest.raises(ConfigError):
        layer.configure(Mode.QUANTIZED, backend="gpu9000")
    # a layer that has a LUT re-checks it against a new spec
    layer.configure(Mode.APPROXIMATE, QuantSpec(8, 8), lut=builtin("drum4"))
    with pytest.raises(LUTError):
        layer.configure(Mode.APPROXIMATE, QuantSpec(4, 4))


def test_configure_rebuilds_gradient_tables():
    conv, _ = conv_and_input()
    layer = ApproxConv2d.from_module(conv)
    layer.configure(Mode.APPROXIMATE, lut=builtin("drum4"), grad_rule="ste")
    assert layer.lut_grad_a is None
    layer.configure(Mode.APPROXIMATE, grad_rule="error_aware", window=3)
    assert layer.lut_grad_a is not None and layer.lut_grad_a.shape == (256, 256)
    assert layer.window == 3


def test_extra_repr():
    conv, _ = conv_and_input()
    layer = ApproxConv2d.from_module(conv).configure(Mode.APPROXIMATE, QuantSpec(8, 8, per_channel=True),
                                                     lut=builtin("drum4"))
    text = repr(layer)
    assert "mode=approximate" in text and "lut=drum4_8u" in text and "per_channel" in text


@pytest.mark.parametrize("grad_rule", ["ste", "error_aware"])
def test_no_file_io_in_forward(tmp_path, monkeypatch, grad_rule):
    lut_path = save_lut(builtin("mitchell", bits=8), tmp_path / "m.npz")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    from axcnn.nn import ConversionPlan, convert_

    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut=str(lut_path), include_linear=True,
                                   grad_rule=GradRule.parse(grad_rule)))
    x = torch.randn(2, 3, 6, 6)
    calibrate(model, [x])
    model.train()

    def forbidden(*args, **kwargs):
        raise AssertionError(f"file I/O during forward/backward: {args[:1]}")

    for mod, name in [(builtins, "open"), (io, "open"), (np, "load"), (np, "fromfile"),
                      (torch, "load"), (os, "open")]:
        monkeypatch.setattr(mod, name, forbidden)
    y = model(x)
    y.sum().backward()
    monkeypatch.undo()
    assert torch.isfinite(y).all()
    assert all(p.grad is not None for p in model.parameters())
    # sanity: the patch really blocks loading a LUT
    monkeypatch.setattr(np, "load", forbidden)
    with pytest.raises(AssertionError):
        load_lut(lut_path)


def test_approx_layers_lists_in_order():
    model = nn.Sequential(ApproxConv2d(1, 2, 3), nn.ReLU(), ApproxLinear(2, 2))
    assert [n for n, _ in approx_layers(model)] == ["0", "2"]


def test_gradients_reach_weights_and_bias():
    conv, x = conv_and_input()
    layer = ApproxConv2d.from_module(conv).configure(Mode.APPROXIMATE, lut=builtin("drum4"),
                                                     grad_rule="error_aware")
    layer.train()
    xx = x.clone().requires_grad_(True)
    layer(xx).square().mean().backward()
    assert conv.weight.grad is not None and conv.bias.grad is not None and xx.grad is not None
    # bias gradient is exact: sum of the upstream gradient
    y = layer(x)
    g = torch.autograd.grad(y.square().mean(), conv.bias)[0]
    assert torch.allclose(g, (2 * y / y.numel()).sum(dim=(0, 2, 3)), rtol=1e-5)
