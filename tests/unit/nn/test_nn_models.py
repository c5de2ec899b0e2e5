"""Every registered model converts to QUANTIZED and APPROXIMATE and trains (forward + backward)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from axcnn.models import create_model, list_models, model_info
from axcnn.nn import ApproxConv2d, ConversionPlan, Mode, approx_layers, convert_
from axcnn.quant import calibrate


#: cheap enough for a second approximate forward pass (the torch backend's 8-bit LUT GEMM
#: takes seconds per layer on the 8x8 feature maps of vgg16 / alexnet on a CPU)
SMALL = ("lenet5", "resnet8", "resnet20")


def _step(model, x, y):
    model.zero_grad(set_to_none=True)
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], model_info_classes(model))
    assert torch.isfinite(out).all()
    F.cross_entropy(out, y).backward()
    for name, layer in approx_layers(model):
        assert layer.weight.grad is not None, name
        assert torch.isfinite(layer.weight.grad).all(), name
    return out


def model_info_classes(model):
    return model.fc.out_features


@pytest.mark.parametrize("name", list_models())
def test_model_converts_and_trains(name):
    torch.manual_seed(0)
    info = model_info(name)
    model = create_model(name)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, *info.input_shape, generator=g)
    y = torch.randint(0, info.num_classes, (2,), generator=g)

    rows = convert_(model, ConversionPlan(mode=Mode.QUANTIZED))
    assert len(rows) == n_convs
    assert all(isinstance(m, ApproxConv2d) for _, m in approx_layers(model))
    assert calibrate(model, [x]) == 1
    _step(model, x, y)

    model.eval()
    with torch.no_grad():
        quant_eval = model(x)

    rows = convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum4"))
    assert {r["lut"] for r in rows} == {"drum4_8u"}
    out = _step(model, x, y)
    assert torch.isfinite(out).all()
    if name in SMALL:
        # the approximate model computes something else than the quantized one
        model.eval()
        with torch.no_grad():
            assert not torch.equal(model(x), quant_eval)
