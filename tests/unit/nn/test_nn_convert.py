"""convert_(model, plan) and set_mode_."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from axcnn.errors import ConfigError, LUTError
from axcnn.lut import builtin
from axcnn.nn import ApproxConv2d, ApproxLinear, ConversionPlan, GradRule, Mode, convert_, set_mode_
from axcnn.quant import QuantSpec, calibrate

CONVS = ["conv1", "conv2", "block.0"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.block = nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU())
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.conv1(x)))
        x = F.relu(self.conv2(x))
        x = self.block(x)
        return self.fc(x.mean(dim=(2, 3)))


def net():
    torch.manual_seed(0)
    return Net()


def x_batch():
    return torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))


def modes(model):
    return {n: m.mode for n, m in model.named_modules() if isinstance(m, (ApproxConv2d, ApproxLinear))}


def test_default_plan_converts_convs_only():
    model = net()
    params = {n: p for n, p in model.named_parameters()}
    rows = convert_(model, ConversionPlan())
    assert [r["layer"] for r in rows] == CONVS
    assert all(r["mode"] == "quantized" and r["lut"] is None for r in rows)
    assert isinstance(model.conv1, ApproxConv2d) and isinstance(model.block[0], ApproxConv2d)
    assert type(model.fc) is nn.Linear
    assert model.conv2.layer_name == "conv2" and model.conv2.groups == 2
    # the parameters are the same objects (optimizer state stays valid)
    for n, p in model.named_parameters():
        assert p is params[n]


def test_include_linear():
    model = net()
    rows = convert_(model, ConversionPlan(include_linear=True))
    assert [r["layer"] for r in rows] == CONVS + ["fc"]
    assert isinstance(model.fc, ApproxLinear) and rows[-1]["type"] == "ApproxLinear"


def test_layer_luts_and_shared_loading():
    model = net()
    mitchell = builtin("mitchell")
    rows = convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4",
                                          layer_luts={"conv2": mitchell, "block.*": "builtin:trunc6"}))
    assert [r["lut"] for r in rows] == ["drum4_8u", "mitchell_8u", "trunc6_8u"]
    assert model.conv2.lut is mitchell
    assert model.block[0].lut.name == "trunc6_8u"
    assert all(m is Mode.APPROXIMATE for m in modes(model).values())


def test_first_pattern_wins():
    model = net()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut=builtin("drum4"),
                                   layer_luts={"conv*": builtin("trunc5"), "conv1": builtin("mitchell")}))
    assert model.conv1.lut.name == "trunc5_8u"


def test_string_luts_are_loaded_once():
    model = net()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4"))
    assert model.conv1.lut is model.conv2.lut is model.block[0].lut


def test_string_lut_follows_the_plan_bits():
    model = net()
    spec = QuantSpec(4, 4, signed=True)
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, spec=spec, lut="builtin:drum3"))
    assert model.conv1.lut.bits_label == "4s"
    with pytest.raises(LUTError):
        convert_(net(), ConversionPlan(mode=Mode.APPROXIMATE, spec=spec, lut=builtin("drum3")))


def test_first_and_last_layer_overrides():
    model = net()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4",
                                   first_layer=Mode.QUANTIZED, last_layer=Mode.EXACT))
    assert modes(model) == {"conv1": Mode.QUANTIZED, "conv2": Mode.APPROXIMATE, "block.0": Mode.EXACT}
    assert model.conv1.lut is None
    model = net()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4", include_linear=True,
                                   last_layer=Mode.QUANTIZED))
    assert modes(model)["fc"] is Mode.QUANTIZED and modes(model)["block.0"] is Mode.APPROXIMATE


def test_layer_modes_patterns():
    model = net()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4",
                                   layer_modes={"block.*": "exact", "conv2": Mode.QUANTIZED}))
    assert modes(model) == {"conv1": Mode.APPROXIMATE, "conv2": Mode.QUANTIZED, "block.0": Mode.EXACT}


def test_plan_errors():
    with pytest.raises(ConfigError, match="match no layer"):
        convert_(net(), ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4",
                                       layer_luts={"conv9": "builtin:trunc4"}))
    with pytest.raises(ConfigError, match="no LUT"):
        convert_(net(), ConversionPlan(mode=Mode.APPROXIMATE))
    with pytest.raises(ConfigError, match="no Conv2d"):
        convert_(nn.Sequential(nn.ReLU()), ConversionPlan())
    with pytest.raises(LUTError):
        convert_(net(), ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:nosuch"))
    with pytest.raises(ConfigError):
        convert_(net(), ConversionPlan(layer_modes={"conv1": "weird"}))


def test_reconvert_keeps_observers_and_parameters():
    model = net()
    convert_(model, ConversionPlan(mode=Mode.QUANTIZED))
    calibrate(model, [x_batch()])
    layer = model.conv2
    obs = layer.act_observer
    lo, hi = obs.min_val.clone(), obs.max_val.clone()
    weight = layer.weight
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4",
                                   grad_rule=GradRule.ERROR_AWARE))
    assert model.conv2 is layer and layer.act_observer is obs and layer.weight is weight
    assert torch.equal(obs.min_val, lo) and torch.equal(obs.max_val, hi) and bool(obs.initialized)
    assert layer.mode is Mode.APPROXIMATE and layer.grad_rule is GradRule.ERROR_AWARE
    model.eval()
    assert torch.isfinite(model(x_batch())).all()  # no recalibration needed


def test_converted_quantized_output_close_to_exact():
    model = net().eval()
    x = x_batch()
    ref = model(x)
    convert_(model, ConversionPlan(include_linear=True))
    calibrate(model, [x])
    assert torch.allclose(model(x), ref, atol=0.05 * ref.abs().max().item() + 1e-3)
    assert not torch.equal(model(x), ref)


def test_set_mode():
    model = net()
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4", first_layer=Mode.QUANTIZED))
    x = x_batch()
    calibrate(model, [x])
    model.eval()
    approx_out = model(x)
    set_mode_(model, Mode.EXACT)
    assert all(m is Mode.EXACT for m in modes(model).values())
    exact_out = model(x)
    assert not torch.equal(exact_out, approx_out)
    with pytest.raises(ConfigError):
        set_mode_(model, Mode.APPROXIMATE)   # conv1 never got a LUT
    set_mode_(model, Mode.QUANTIZED)
    assert all(m is Mode.QUANTIZED for m in modes(model).values())
