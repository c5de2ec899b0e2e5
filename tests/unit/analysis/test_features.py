"""Layer aliases, seeded sampling and feature extraction that leaves the model unchanged."""

import numpy as np
import pytest
import torch

from axcnn.analysis.features import extract, resolve_layer, safe_layer_name, sample_indices
from axcnn.errors import ConfigError
from axcnn.models import create_model


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    return create_model("lenet5", num_classes=10, in_channels=1).eval()


def test_aliases_on_lenet_and_resnet(lenet):
    assert resolve_layer(lenet, "penultimate").kind == "penultimate"
    assert resolve_layer(lenet, "logits").path == "fc"
    assert resolve_layer(lenet, "conv1").path == "features.0"
    assert resolve_layer(lenet, "conv2").path == "features.4"
    assert resolve_layer(lenet, "block1").path == "features.3"   # first MaxPool2d
    assert resolve_layer(lenet, "block2").path == "features.7"
    assert resolve_layer(lenet, "classifier.0").kind == "module"  # a literal path
    assert resolve_layer(lenet, "pixels").feature_space == "pixels"
    resnet = create_model("resnet8", num_classes=10, in_channels=3)
    assert resolve_layer(resnet, "block1").path == "layer1"
    assert resolve_layer(resnet, "conv1").path == "stem.conv"
    with pytest.raises(ConfigError, match="neither an alias"):
        resolve_layer(lenet, "features.99")
    assert safe_layer_name("layer1.0.conv2") == "layer1-0-conv2"


def test_sample_indices_seeded_unique_and_filtered():
    y = np.repeat(np.arange(5), 40)
    a = sample_indices(y, 50, seed=3)
    assert np.array_equal(a, sample_indices(torch.as_tensor(y), 50, seed=3))
    assert not np.array_equal(a, sample_indices(y, 50, seed=4))
    assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
    b = sample_indices(y, 1000, seed=3, classes=[1, 4])
    assert len(b) == 80 and set(y[b]) == {1, 4}
    assert len(sample_indices(y, 0, seed=1)) == 0


def test_extract_shapes_predictions_and_no_state_change(lenet):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 1, 32, 32), dtype=torch.uint8, generator=g)
    mean, std = (0.5,), (0.25,)
    layers = [resolve_layer(lenet, n) for n in ("penultimate", "logits", "conv1", "pixels", "block2")]
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    feats, pred = extract(lenet, images, mean, std, layers, batch_size=16)
    assert feats["forward_features"].shape == (37, 84)
    assert feats["fc"].shape == (37, 10)
    assert feats["features.0"].shape == (37, 6 * 28 * 28)
    assert feats["input"].shape == (37, 32 * 32)
    assert feats["features.7"].shape == (37, 16 * 5 * 5)
    with torch.no_grad():
        x = (images.float() / 255 - 0.5) / 0.25
        logits = lenet(x)
    np.testing.assert_allclose(feats["fc"], logits.numpy(), rtol=1e-5, atol=1e-5)
    assert np.array_equal(pred, logits.argmax(1).numpy())
    assert all(torch.equal(before[k], v) for k, v in lenet.state_dict().items())
    assert not any(m._forward_hooks for m in lenet.modules())  # hooks removed
    lenet.train()
    try:
        with pytest.raises(ConfigError, match="eval mode"):
            extract(lenet, images, mean, std, layers[:1])
    finally:
        lenet.eval()
