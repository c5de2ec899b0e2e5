"""ImageDataset, the dataset registry, the synthetic set and image folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import axcnn
from axcnn.data import Augment, ImageDataset, channel_stats, list_datasets, load_dataset
from axcnn.errors import ConfigError, DataError


def _dataset(n_train=30, n_test=12, c=1):
    # image i is filled with i, its label is i % 10, so alignment can be checked after subsetting
    tx = torch.arange(n_train, dtype=torch.uint8).view(-1, 1, 1, 1).expand(n_train, c, 4, 4).contiguous()
    vx = torch.arange(n_test, dtype=torch.uint8).view(-1, 1, 1, 1).expand(n_test, c, 4, 4).contiguous()
    return ImageDataset(
        name="toy", train_images=tx, train_labels=torch.arange(n_train) % 10,
        test_images=vx, test_labels=torch.arange(n_test) % 10,
        classes=[str(i) for i in range(10)], mean=(0.5,) * c, std=(0.25,) * c,
    )


def test_properties_and_normalize():
    ds = _dataset()
    assert ds.num_classes == 10 and ds.image_shape == (1, 4, 4) and ds.augment is Augment.NONE
    x = ds.normalize(ds.train_images[:3])
    assert x.dtype == torch.float32
    assert torch.allclose(x, (ds.train_images[:3].float() / 255 - 0.5) / 0.25, atol=1e-6)
    assert "toy" in repr(ds)


def test_subset_is_seeded_without_replacement_and_aligned():
    ds = _dataset()
    sub = ds.subset(train=10, test=5, seed=3)
    assert len(sub.train_images) == 10 and len(sub.test_labels) == 5
    values = sub.train_images[:, 0, 0, 0].long()
    assert len(set(values.tolist())) == 10  # no replacement
    assert torch.equal(values % 10, sub.train_labels)
    assert torch.equal(sub.test_images[:, 0, 0, 0].long() % 10, sub.test_labels)
    again = ds.subset(train=10, test=5, seed=3)
    assert torch.equal(again.train_images, sub.train_images)
    other = ds.subset(train=10, seed=4)
    assert not torch.equal(other.train_images, sub.train_images)
    assert len(other.test_labels) == 12  # None keeps all
    assert len(ds.train_labels) == 30  # the original is untouched


@pytest.mark.parametrize("bad", [0, 31, -1, 2.0])
def test_subset_bad_size(bad):
    with pytest.raises(ConfigError, match="train"):
        _dataset().subset(train=bad)


def test_to_returns_a_new_dataset():
    ds = _dataset()
    moved = ds.to("cpu")
    assert moved is not ds and moved.device.type == "cpu"
    assert torch.equal(moved.train_images, ds.train_images) and moved.classes == ds.classes


def test_validation():
    ds = _dataset()
    with pytest.raises(DataError, match="uint8"):
        ImageDataset("bad", ds.train_images.float(), ds.train_labels, ds.test_images, ds.test_labels,
                     ds.classes, ds.mean, ds.std)
    with pytest.raises(DataError, match="labels"):
        ImageDataset("bad", ds.train_images, ds.train_labels[:-1], ds.test_images, ds.test_labels,
                     ds.classes, ds.mean, ds.std)
    with pytest.raises(DataError, match="per channel"):
        ImageDataset("bad", ds.train_images, ds.train_labels, ds.test_images, ds.test_labels,
                     ds.classes, (0.1, 0.2), (0.3, 0.4))


def test_train_and_test_batches():
    ds = _dataset()
    g = torch.Generator().manual_seed(0)
    train = list(ds.train_batches(8, generator=g))
    assert sorted(torch.cat([b[1] for b in train]).tolist()) == sorted(ds.train_labels.tolist())
    test = list(ds.test_batches(5))
    assert torch.equal(torch.cat([b[1] for b in test]), ds.test_labels)
    assert torch.equal(torch.cat([b[0] for b in test]), ds.normalize(ds.test_images))


def test_registry_names_and_errors():
    assert list_datasets() == ["cifar10", "cifar100", "fashion_mnist", "imagefolder", "mnist", "synthetic"]
    with pytest.raises(ConfigError) as err:
        load_dataset("imagenet")
    assert all(n in str(err.value) for n in list_datasets())
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("mnist", seed=1)
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("synthetic", colour=True)


def test_synthetic_is_deterministic_and_configurable():
    a = load_dataset("synthetic", image_shape=(3, 16, 16), train_size=100, test_size=40, seed=7)
    b = load_dataset("synthetic", image_shape=(3, 16, 16), train_size=100, test_size=40, seed=7)
    c = load_dataset("synthetic", image_shape=(3, 16, 16), train_size=100, test_size=40, seed=8)
    assert a.train_images.shape == (100, 3, 16, 16) and a.test_images.shape == (40, 3, 16, 16)
    assert a.train_images.dtype == torch.uint8
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert torch.bincount(a.train_labels).tolist() == [10] * 10  # balanced
    assert a.num_classes == 10 and a.augment is Augment.NONE
    assert a.mean == pytest.approx(channel_stats(a.train_images)[0]) and len(a.std) == 3
    mean = a.train_images.double().mean(dim=(0, 2, 3)) / 255
    assert a.mean == pytest.approx(mean.tolist(), abs=1e-9)
    default = load_dataset("synthetic")
    assert default.image_shape == (1, 32, 32)


def test_synthetic_classes_are_separable_by_nearest_class_mean():
    # not a training run: a nearest-centroid classifier already separates the classes
    ds = load_dataset("synthetic", train_size=500, test_size=200, seed=0)
    x = ds.train_images.flatten(1).float()
    centroids = torch.stack([x[ds.train_labels == k].mean(0) for k in range(10)])
    pred = torch.cdist(ds.test_images.flatten(1).float(), centroids).argmin(1)
    assert (pred == ds.test_labels).float().mean() > 0.6


@pytest.mark.parametrize("bad", [{"image_shape": (32, 32)}, {"train_size": 0}, {"num_classes": 1},
                                 {"image_shape": (1, 0, 4)}])
def test_synthetic_bad_options(bad):
    with pytest.raises(ConfigError):
        load_dataset("synthetic", **bad)


def _write_png(path: Path, size=(8, 6), mode="RGB", value=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, 7)).save(path)


def test_imagefolder_rgb(tmp_path):
    pytest.importorskip("PIL")
    for split, n in (("train", 3), ("test", 1)):
        for k, cls in enumerate(("dog", "cat")):
            for i in range(n):
                _write_png(tmp_path / split / cls / f"{i}.png", value=10 * k + i)
    ds = load_dataset("imagefolder", data_dir=tmp_path)
    assert ds.classes == ["cat", "dog"]
    assert ds.train_images.shape == (6, 3, 6, 8) and ds.test_images.shape == (2, 3, 6, 8)
    assert sorted(ds.train_labels.tolist()) == [0, 0, 0, 1, 1, 1]
    # dog images (label 1) were written with red = 0..2, cat images with red = 10..12
    reds = ds.train_images[:, 0, 0, 0]
    assert torch.equal(reds >= 10, ds.train_labels == 0)
    assert ds.train_images[0, 2, 0, 0] == 7
    assert len(ds.mean) == 3


def test_imagefolder_grayscale_and_errors(tmp_path):
    pytest.importorskip("PIL")
    _write_png(tmp_path / "train" / "a" / "0.png", mode="L", value=9)
    _write_png(tmp_path / "train" / "b" / "0.png", mode="L", value=200)
    _write_png(tmp_path / "test" / "b" / "0.png", mode="L", value=200)
    ds = load_dataset("imagefolder", data_dir=tmp_path)
    assert ds.image_shape == (1, 6, 8) and ds.test_labels.tolist() == [1]
    assert ds.train_images[0].unique().tolist() == [9]

    _write_png(tmp_path / "test" / "c" / "0.png", mode="L")
    with pytest.raises(DataError, match="'c'"):
        load_dataset("imagefolder", data_dir=tmp_path)
    (tmp_path / "test" / "c" / "0.png").unlink()

    _write_png(tmp_path / "train" / "a" / "1.png", mode="L", size=(5, 5))
    with pytest.raises(DataError, match="share one size"):
        load_dataset("imagefolder", data_dir=tmp_path)

    with pytest.raises(ConfigError, match="data_dir"):
        load_dataset("imagefolder")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", data_dir=tmp_path / "nowhere")


def test_imports_stay_light():
    src = Path(axcnn.__file__).resolve().parents[1]
    code = ("import sys, axcnn.data, axcnn.models; "
            "bad = [m for m in ('PIL', 'torchvision', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=str(src))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
