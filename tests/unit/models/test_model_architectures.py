"""Every registered architecture: shapes, gradients, feature/head split, layer layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from axcnn.models import create_model, list_models, model_info

ALL = list_models()
CONV_COUNTS = {"lenet5": 2, "resnet8": 9, "resnet20": 21, "resnet56": 57, "vgg16": 13, "alexnet_cifar10": 5}
FEATURE_DIMS = {"lenet5": 84, "resnet8": 64, "resnet20": 64, "resnet56": 64, "vgg16": 4096, "alexnet_cifar10": 1024}


def _input(name: str, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, *model_info(name).input_shape)


def _convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    out = model(_input(name))
    assert out.shape == (2, model_info(name).num_classes)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_forward_is_head_of_forward_features(name):
    model = create_model(name).eval()
    x = _input(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, FEATURE_DIMS[name])
        assert feats.shape[1] == model.fc.in_features
        assert torch.equal(model(x), model.head(feats))
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == model_info(name).num_classes


@pytest.mark.parametrize("name", ALL)
def test_module_names_unique_and_modules_not_shared(name):
    model = create_model(name)
    with_dupes = [n for n, _ in model.named_modules(remove_duplicate=False)]
    unique = [n for n, _ in model.named_modules()]
    # a module object registered under two names would make an in-place swap ambiguous
    assert with_dupes == unique
    assert len(set(unique)) == len(unique)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    assert all(layers) and len(set(layers)) == len(layers)


@pytest.mark.parametrize("name", ALL)
def test_conv_count_and_no_inplace_relu(name):
    model = create_model(name)
    assert len(_convs(model)) == CONV_COUNTS[name]
    assert all(not m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_resnet20_has_19_3x3_and_2_1x1_convs():
    convs = _convs(create_model("resnet20"))
    sizes = [m.kernel_size for m in convs.values()]
    assert sizes.count((3, 3)) == 19 and sizes.count((1, 1)) == 2
    assert sorted(n for n, m in convs.items() if m.kernel_size == (1, 1)) == [
        "layer2.0.shortcut.0", "layer3.0.shortcut.0"
    ]


@pytest.mark.parametrize("name, blocks", [("resnet8", 1), ("resnet20", 3), ("resnet56", 9)])
def test_resnet_layout(name, blocks):
    model = create_model(name)
    convs = _convs(model)
    assert "stem.conv" in convs and convs["stem.conv"].out_channels == 16
    for stage, width in ((1, 16), (2, 32), (3, 64)):
        layer = getattr(model, f"layer{stage}")
        assert len(layer) == blocks
        assert layer[0].conv2.out_channels == width
        assert isinstance(layer[0].shortcut, nn.Sequential) == (stage > 1)
    assert layer[0].conv1.stride == (2, 2)
    assert all(m.bias is None for m in convs.values())


def test_resnet_init_is_kaiming_and_bn_identity():
    torch.manual_seed(0)
    model = create_model("resnet56")
    conv = model.layer3[4].conv1  # fan_out = 64 * 9 -> std = sqrt(2 / 576)
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_lenet_layout():
    model = create_model("lenet5")
    convs = _convs(model)
    assert list(convs) == ["features.0", "features.4"]
    assert all(m.bias is not None and m.kernel_size == (5, 5) for m in convs.values())
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [(400, 120), (120, 84), (84, 10)]


def test_vgg_layout():
    model = create_model("vgg16")
    convs = list(_convs(model).values())
    assert all(m.bias is not None and m.kernel_size == (3, 3) for m in convs)
    assert [m.out_channels for m in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    # a max pool right after the ReLU of convs 2, 4, 7, 10, 13
    pools_after, n_conv = [], 0
    for m in model.features:
        n_conv += isinstance(m, nn.Conv2d)
        if isinstance(m, nn.MaxPool2d):
            pools_after.append(n_conv)
    assert pools_after == [2, 4, 7, 10, 13]
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [(512, 4096), (4096, 4096), (4096, 10)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2


def test_alexnet_layout():
    model = create_model("alexnet_cifar10")
    convs = list(_convs(model).values())
    assert [m.out_channels for m in convs] == [64, 128, 256, 256, 256]
    assert all(m.bias is None for m in convs)
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [(4096, 1024), (1024, 1024), (1024, 10)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3


class _CountingConv(nn.Conv2d):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


class _CountingLinear(nn.Linear):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


def _swap_(model: nn.Module) -> int:
    """Replace every Conv2d/Linear by a counting subclass in place (as axcnn.nn.convert_ will)."""
    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                new = _CountingConv(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                    child.padding, bias=child.bias is not None)
            elif type(child) is nn.Linear:
                new = _CountingLinear(child.in_features, child.out_features, bias=child.bias is not None)
            else:
                continue
            new.load_state_dict(child.state_dict())
            setattr(parent, child_name, new)
            swapped += 1
    return swapped


@pytest.mark.parametrize("name", ["lenet5", "resnet8", "alexnet_cifar10"])
def test_in_place_layer_swap_keeps_outputs(name):
    model = create_model(name).eval()
    x = _input(name)
    with torch.no_grad():
        before = model(x)
    swapped = _swap_(model)
    _CountingConv.calls = _CountingLinear.calls = 0
    with torch.no_grad():
        after = model(x)
    n_conv, n_lin = CONV_COUNTS[name], sum(isinstance(m, nn.Linear) for m in model.modules())
    assert swapped == n_conv + n_lin
    assert _CountingConv.calls == n_conv and _CountingLinear.calls == n_lin
    assert torch.allclose(before, after)
