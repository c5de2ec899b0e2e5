"""Fixtures that write tiny, valid dataset files in the standard on-disk layouts."""

from __future__ import annotations

import functools
import http.server
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from axcnn.data.idx import write_idx

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _write_idx_set(directory: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0) -> dict:
    """Four MNIST-style IDX files with random 28x28 images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_STEMS[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_STEMS[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_STEMS[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_STEMS[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(directory / (stem + (".gz" if gz else "")), arr)
    return arrays


def _write_cifar10(directory: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0, protocol: int = 2) -> dict:
    """A ``cifar-10-batches-py``-style folder with tiny batches (bytes keys like the originals)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {"train_x": [], "train_y": []}
    for b in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        written["train_x"].append(x)
        written["train_y"] += y
        with open(directory / f"data_batch_{b}", "wb") as f:
            pickle.dump({b"batch_label": b"training batch", b"labels": y, b"data": x,
                         b"filenames": [b"img.png"] * per_batch}, f, protocol=protocol)
    x = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    y = rng.integers(0, 10, n_test).tolist()
    written.update(test_x=x, test_y=y)
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"batch_label": b"testing batch", b"labels": y, b"data": x}, f, protocol=protocol)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f, protocol=protocol)
    written["train_x"] = np.concatenate(written["train_x"])
    return written


def _write_cifar100(directory: Path, n_train: int = 7, n_test: int = 3, seed: int = 0) -> dict:
    """A ``cifar-100-python``-style folder (str keys, numpy label arrays)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        out[split] = (x, fine)
        with open(directory / split, "wb") as f:
            pickle.dump({"data": x, "fine_labels": fine, "coarse_labels": [v // 5 for v in fine]}, f)
    with open(directory / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, f)
    return out


@pytest.fixture
def write_idx_set():
    return _write_idx_set


@pytest.fixture
def write_cifar10():
    return _write_cifar10


@pytest.fixture
def write_cifar100():
    return _write_cifar100


@pytest.fixture(autouse=True)
def _isolated_data_env(monkeypatch, tmp_path_factory):
    """No test reads the developer's AXCNN_DATA_DIR, mirror or ~/.cache."""
    monkeypatch.setenv("AXCNN_DATA_DIR", str(tmp_path_factory.mktemp("empty-data-root")))
    monkeypatch.delenv("AXCNN_DATASET_MIRROR", raising=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serve ``tmp_path/'srv'`` on 127.0.0.1; yields (folder, base URL)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
