"""IDX files and the MNIST / Fashion-MNIST loaders on small generated files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from axcnn.data import candidate_dirs, load_dataset
from axcnn.data import loaders
from axcnn.data.idx import read_idx, write_idx
from axcnn.errors import DataError

IMG, LBL, TIMG, TLBL = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_roundtrip(tmp_path, suffix):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    path = write_idx(tmp_path / f"x{suffix}", arr)
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and struct.unpack(">3I", raw[4:16]) == (2, 3, 5)
    back = read_idx(path, expected_ndim=3)
    assert back.dtype == np.uint8 and np.array_equal(back, arr)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_loads_and_pads_to_32(tmp_path, write_idx_set, gz):
    arrays = write_idx_set(tmp_path / "mnist", n_train=12, n_test=5, gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.train_images.shape == (12, 1, 32, 32) and ds.test_images.shape == (5, 1, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    # the original 28x28 sits in the middle; a 2-pixel zero border around it
    assert np.array_equal(ds.train_images[:, 0, 2:30, 2:30].numpy(), arrays[IMG])
    border = ds.train_images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0
    assert np.array_equal(ds.test_labels.numpy(), arrays[TLBL])
    assert ds.mean == (0.1307,) and ds.std == (0.3081,)
    assert ds.classes == [str(d) for d in range(10)] and ds.augment.name == "NONE"


@pytest.mark.parametrize("sub", ["MNIST/raw", "mnist", "."])
def test_mnist_conventional_subfolders(tmp_path, write_idx_set, sub):
    write_idx_set(tmp_path / sub, n_train=3, n_test=2)
    assert len(load_dataset("mnist", data_dir=tmp_path).train_labels) == 3


def test_fashion_mnist_from_env_dir_with_mixed_gzip(tmp_path, write_idx_set, monkeypatch):
    arrays = write_idx_set(tmp_path / "FashionMNIST" / "raw", n_train=4, n_test=3, gz=True)
    (tmp_path / "FashionMNIST" / "raw" / f"{TLBL}.gz").unlink()
    write_idx(tmp_path / "FashionMNIST" / "raw" / TLBL, arrays[TLBL])
    monkeypatch.setenv("AXCNN_DATA_DIR", str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert ds.name == "fashion_mnist" and ds.image_shape == (1, 32, 32)
    assert ds.mean == (0.2860,) and ds.std == (0.3530,)
    assert ds.classes[0] == "T-shirt/top" and ds.num_classes == 10
    assert np.array_equal(ds.test_labels.numpy(), arrays[TLBL])


def test_missing_lists_every_place_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian-missing")
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    msg = str(err.value)
    places = candidate_dirs("fashion_mnist", tmp_path)
    assert tmp_path / "debian-missing" in places
    for place in places:
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download=True" in msg and "train-images-idx3-ubyte" in msg


def test_missing_mnist_partial_dir_names_missing_files(tmp_path, write_idx_set):
    write_idx_set(tmp_path / "mnist", n_train=3, n_test=2)
    (tmp_path / "mnist" / f"{TIMG}.gz").unlink()
    with pytest.raises(DataError, match=f"missing {TIMG}") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert "apt-get" not in str(err.value)


def _corrupt_cases():
    def bad_magic(d):
        p = d / IMG
        raw = bytearray(p.read_bytes())
        raw[0] = 7
        p.write_bytes(bytes(raw))
        return IMG

    def truncated(d):
        p = d / IMG
        p.write_bytes(p.read_bytes()[:-10])
        return IMG

    def too_long(d):
        p = d / LBL
        p.write_bytes(p.read_bytes() + b"\x00")
        return LBL

    def count_mismatch(d):
        write_idx(d / LBL, np.zeros(11, dtype=np.uint8))
        return IMG

    def label_out_of_range(d):
        write_idx(d / TLBL, np.full(5, 10, dtype=np.uint8))
        return TLBL

    def wrong_ndim(d):
        write_idx(d / LBL, np.zeros((12, 1, 1), dtype=np.uint8))
        return LBL

    def wrong_size(d):
        write_idx(d / IMG, np.zeros((12, 20, 20), dtype=np.uint8))
        return IMG

    def wrong_dtype(d):
        p = d / IMG
        raw = bytearray(p.read_bytes())
        raw[2] = 0x0D  # float32
        p.write_bytes(bytes(raw))
        return IMG

    return [bad_magic, truncated, too_long, count_mismatch, label_out_of_range, wrong_ndim, wrong_size, wrong_dtype]


@pytest.mark.parametrize("corrupt", _corrupt_cases(), ids=lambda f: f.__name__)
def test_corrupt_files_raise_data_error_naming_the_file(tmp_path, write_idx_set, corrupt):
    write_idx_set(tmp_path, n_train=12, n_test=5, gz=False)
    bad = corrupt(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert bad in str(err.value)


def test_truncated_gzip_raises_data_error(tmp_path, write_idx_set):
    write_idx_set(tmp_path, n_train=12, n_test=5, gz=True)
    p = tmp_path / f"{IMG}.gz"
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(DataError, match=IMG):
        load_dataset("mnist", data_dir=tmp_path)
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=IMG):
        load_dataset("mnist", data_dir=tmp_path)
