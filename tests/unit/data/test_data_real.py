"""Real datasets present on the machine (skipped cleanly when absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from axcnn.data import Augment, load_dataset
from axcnn.data.loaders import DEBIAN_FASHION_MNIST_DIR

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_debian_package(tmp_path):
    ds = load_dataset("fashion_mnist", data_dir=tmp_path)  # empty root: falls back to Debian's copy
    assert len(ds.train_labels) == 60000 and len(ds.test_labels) == 10000
    assert ds.image_shape == (1, 32, 32)
    assert ds.train_labels.min() == 0 and ds.train_labels.max() == 9
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.train_images[:, :, :2].sum() == 0 and ds.train_images[:, :, :, 30:].sum() == 0
    mean = ds.train_images[:, :, 2:30, 2:30].double().mean().item() / 255
    assert mean == pytest.approx(0.2860, abs=1e-3)  # the published constant (over 28x28)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "cifar10_jpeg_q75.npz").is_file(), reason="no ../shared/data CIFAR-10 pack")
def test_cifar10_jpeg_pack_converted_and_loaded(tmp_path):
    pytest.importorskip("PIL")
    script = SHARED_DATA / "cifar10_to_batches.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=300)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert len(ds.train_labels) == 50000 and len(ds.test_labels) == 10000
    assert ds.image_shape == (3, 32, 32) and ds.num_classes == 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.augment is Augment.CROP_FLIP and ds.classes[0] == "airplane"
