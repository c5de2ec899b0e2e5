"""The model registry: names, aliases, defaults, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from axcnn.errors import ConfigError
from axcnn.models import create_model, list_models, model_info, register_model, resolve_model_name
from axcnn.models import registry

EXPECTED = {
    "lenet5": ("fashion_mnist", (1, 32, 32), 10),
    "resnet8": ("cifar10", (3, 32, 32), 10),
    "resnet20": ("cifar10", (3, 32, 32), 10),
    "resnet56": ("cifar100", (3, 32, 32), 100),
    "vgg16": ("cifar10", (3, 32, 32), 10),
    "alexnet_cifar10": ("cifar10", (3, 32, 32), 10),
}


def test_list_models_is_exactly_the_six_architectures():
    assert list_models() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_info_fields(name):
    info = model_info(name)
    assert info.name == name
    assert (info.default_dataset, info.input_shape, info.num_classes) == EXPECTED[name]
    with pytest.raises(Exception):
        info.name = "other"  # frozen


@pytest.mark.parametrize(
    "alias, canonical",
    [("resnet", "resnet20"), ("resnet20", "resnet20"), ("lenet", "lenet5"), ("LeNet5", "lenet5"),
     (" ResNet ", "resnet20"), ("alexnet", "alexnet_cifar10")],
)
def test_aliases_resolve(alias, canonical):
    assert resolve_model_name(alias) == canonical
    assert model_info(alias).name == canonical
    model = create_model(alias)
    reference = create_model(canonical)
    assert type(model) is type(reference)
    assert [n for n, _ in model.named_modules()] == [n for n, _ in reference.named_modules()]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        create_model("resnet18")
    msg = str(err.value)
    assert "resnet18" in msg
    for name in EXPECTED:
        assert name in msg
    with pytest.raises(ConfigError):
        model_info("nope")


def test_overrides_of_classes_and_channels():
    model = create_model("resnet8", num_classes=7, in_channels=1)
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7)
    assert model.stem.conv.in_channels == 1
    assert create_model("lenet5", in_channels=3).features[0].in_channels == 3


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_bad_num_classes_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("lenet5", num_classes=bad)
    with pytest.raises(ConfigError, match="in_channels"):
        create_model("lenet5", in_channels=bad)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Let a test register models without leaking them into the global registry."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_INFOS", dict(registry._INFOS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))


def test_register_a_new_model(scratch_registry):
    @register_model("tiny", default_dataset="synthetic", input_shape=(1, 8, 8), num_classes=3, aliases=("t",))
    def tiny(num_classes, in_channels):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes))

    assert "tiny" in list_models()
    assert create_model("t")(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert model_info("tiny").aliases == ("t",)


def test_duplicate_registration_is_refused(scratch_registry):
    with pytest.raises(ConfigError, match="already"):
        register_model("other", default_dataset="x", input_shape=(1, 2, 2), num_classes=2, aliases=("lenet",))(
            lambda n, c: nn.Identity()
        )
    with pytest.raises(ConfigError, match="already"):
        register_model("resnet8", default_dataset="x", input_shape=(1, 2, 2), num_classes=2)(lambda n, c: nn.Identity())
    assert resolve_model_name("lenet") == "lenet5"


def test_bad_input_shape_is_refused(scratch_registry):
    with pytest.raises(ConfigError, match="input_shape"):
        register_model("flat", default_dataset="x", input_shape=(32, 32), num_classes=2)
