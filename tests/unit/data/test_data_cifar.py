"""CIFAR-10 / CIFAR-100 readers on small generated pickles, including hostile ones."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from axcnn.data import Augment, load_dataset
from axcnn.data.cifar import safe_load_pickle
from axcnn.errors import DataError


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_loads_in_rgb_plane_order(tmp_path, write_cifar10, protocol):
    w = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=4, n_test=6, protocol=protocol)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (6, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.test_labels.dtype == torch.int64
    # data rows are 1024 R values, then 1024 G, then 1024 B, each row-major 32x32
    assert np.array_equal(ds.train_images[5, 1].numpy(), w["train_x"][5, 1024:2048].reshape(32, 32))
    assert ds.train_labels.tolist() == w["train_y"] and ds.test_labels.tolist() == w["test_y"]
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert ds.mean == (0.5, 0.5, 0.5) and ds.std == (0.5, 0.5, 0.5)
    assert ds.augment is Augment.CROP_FLIP


@pytest.mark.parametrize("sub", [".", "cifar/cifar-10-batches-py"])
def test_cifar10_files_directly_or_in_seed_folder(tmp_path, write_cifar10, sub):
    write_cifar10(tmp_path / sub, per_batch=2, n_test=2)
    assert len(load_dataset("cifar10", data_dir=tmp_path).train_labels) == 10


def test_cifar100_fine_labels(tmp_path, write_cifar100):
    w = write_cifar100(tmp_path / "cifar-100-python", n_train=7, n_test=3)
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.train_images.shape == (7, 3, 32, 32) and ds.num_classes == 100
    assert ds.train_labels.tolist() == w["train"][1] and ds.test_labels.tolist() == w["test"][1]
    assert np.array_equal(ds.test_images[2].reshape(-1).numpy(), w["test"][0][2])
    assert ds.mean == (0.5071, 0.4867, 0.4408) and ds.std == (0.2675, 0.2565, 0.2761)
    assert ds.augment is Augment.CROP_FLIP and ds.classes[99] == "c99"


def test_missing_cifar10_mentions_offline_script(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert "cifar10_to_batches.py" in msg and "download=True" in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("func", [os.system, eval, getattr(os, "popen")], ids=["os.system", "eval", "os.popen"])
def test_malicious_pickle_is_refused_without_running(tmp_path, write_cifar10, func):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar10(d)
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if func is not eval else f"open({str(marker)!r}, 'w').close()"
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Evil(func, arg), b"labels": [0]}, f)
    with pytest.raises(DataError, match="data_batch_3") as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "not allowed" in str(err.value)
    assert not marker.exists()


def test_safe_unpickler_reads_plain_containers_and_arrays(tmp_path):
    obj = {"a": [1, 2], b"b": np.arange(6, dtype=np.uint8).reshape(2, 3), "c": (b"x", 1.5, None, True)}
    for protocol in (0, 2, 4, 5):
        p = tmp_path / f"ok{protocol}"
        p.write_bytes(pickle.dumps(obj, protocol=protocol))
        back = safe_load_pickle(p)
        assert back["a"] == [1, 2] and np.array_equal(back[b"b"], obj[b"b"]) and back["c"] == obj["c"]


def _mutations():
    def truncated(d):
        p = d / "data_batch_2"
        p.write_bytes(p.read_bytes()[:100])
        return "data_batch_2"

    def float_data(d):
        with open(d / "data_batch_4", "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, f)
        return "data_batch_4"

    def wrong_width(d):
        with open(d / "test_batch", "wb") as f:
            pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
        return "test_batch"

    def label_out_of_range(d):
        with open(d / "data_batch_1", "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f)
        return "data_batch_1"

    def label_count(d):
        with open(d / "data_batch_1", "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f)
        return "data_batch_1"

    def not_a_dict(d):
        with open(d / "data_batch_5", "wb") as f:
            pickle.dump([1, 2, 3], f)
        return "data_batch_5"

    def missing_key(d):
        with open(d / "data_batch_5", "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
        return "data_batch_5"

    def bad_meta(d):
        with open(d / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [b"a", b"b"]}, f)
        return "batches.meta"

    def garbage(d):
        (d / "test_batch").write_bytes(b"\x00garbage")
        return "test_batch"

    return [truncated, float_data, wrong_width, label_out_of_range, label_count, not_a_dict, missing_key, bad_meta,
            garbage]


@pytest.mark.parametrize("mutate", _mutations(), ids=lambda f: f.__name__)
def test_corrupt_cifar_files_raise_data_error_naming_the_file(tmp_path, write_cifar10, mutate):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar10(d)
    name = mutate(d)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert name in str(err.value)
