"""Downloads from a local http.server on 127.0.0.1, and safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest

from axcnn.data import download as dl
from axcnn.data import load_dataset
from axcnn.errors import ConfigError, DataError


def _no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".extract-")]


def test_mnist_download_from_mirror_argument(tmp_path, http_root, write_idx_set):
    srv, url = http_root
    arrays = write_idx_set(srv / "mnist", n_train=6, n_test=4, gz=True)
    data = tmp_path / "data"
    ds = load_dataset("mnist", data_dir=data, download=True, mirror=url)
    assert ds.train_images.shape == (6, 1, 32, 32)
    assert np.array_equal(ds.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert sorted(p.name for p in (data / "mnist").iterdir()) == sorted(
        f"{s}.gz" for s in arrays
    )
    assert _no_partial_files(data)
    # a second load finds the files without the network
    assert len(load_dataset("mnist", data_dir=data).train_labels) == 6


def test_fashion_mnist_download_from_env_mirror(tmp_path, http_root, write_idx_set, monkeypatch):
    srv, url = http_root
    write_idx_set(srv / "fashion_mnist", n_train=3, n_test=2, gz=True)
    monkeypatch.setenv("AXCNN_DATASET_MIRROR", url + "/")
    monkeypatch.setenv("AXCNN_DATA_DIR", str(tmp_path / "root"))
    from axcnn.data import loaders

    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    ds = load_dataset("fashion_mnist", download=True)
    assert len(ds.train_labels) == 3
    assert (tmp_path / "root" / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_missing_file_on_server_is_a_data_error_with_url(tmp_path, http_root, write_idx_set):
    srv, url = http_root
    write_idx_set(srv / "mnist", n_train=3, n_test=2)
    (srv / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    data = tmp_path / "data"
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=data, download=True, mirror=url)
    msg = str(err.value)
    assert f"{url}/mnist/t10k-images-idx3-ubyte.gz" in msg and "404" in msg
    assert "Offline alternatives" in msg
    assert not (data / "mnist" / "t10k-images-idx3-ubyte.gz").exists()
    assert _no_partial_files(data)


def test_unreachable_server_is_a_data_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path, download=True, mirror=url, timeout=5)
    msg = str(err.value)
    assert f"{url}/cifar10/cifar-10-python.tar.gz" in msg
    assert "cifar10_to_batches.py" in msg
    assert _no_partial_files(tmp_path) and not (tmp_path / "cifar-10-python.tar.gz").exists()


def test_bad_mirror_scheme_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="http"):
        load_dataset("mnist", data_dir=tmp_path, download=True, mirror="ftp://example.org")


def _tar_gz(members: dict[str, bytes], extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if extra is not None:
            extra(tar)
    return buf.getvalue()


def _cifar_tar(tmp_path: Path, write_cifar10) -> bytes:
    folder = tmp_path / "build" / "cifar-10-batches-py"
    write_cifar10(folder, per_batch=2, n_test=3)
    return _tar_gz({f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})


def test_cifar10_download_verifies_md5_and_extracts(tmp_path, http_root, write_cifar10, monkeypatch):
    srv, url = http_root
    blob = _cifar_tar(tmp_path, write_cifar10)
    (srv / "cifar10").mkdir()
    (srv / "cifar10" / "cifar-10-python.tar.gz").write_bytes(blob)
    remote = dl.SOURCES["cifar10"][0]
    data = tmp_path / "data"

    monkeypatch.setitem(dl.SOURCES, "cifar10", (dl.RemoteFile(remote.filename, remote.urls, md5="0" * 32),))
    with pytest.raises(DataError, match="MD5"):
        load_dataset("cifar10", data_dir=data, download=True, mirror=url)
    assert not (data / "cifar-10-python.tar.gz").exists() and not (data / "cifar-10-batches-py").exists()

    good = hashlib.md5(blob).hexdigest()
    monkeypatch.setitem(dl.SOURCES, "cifar10", (dl.RemoteFile(remote.filename, remote.urls, md5=good),))
    ds = load_dataset("cifar10", data_dir=data, download=True, mirror=url)
    assert ds.train_images.shape == (10, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    assert (data / "cifar-10-batches-py" / "batches.meta").is_file()
    assert not (data / "cifar-10-python.tar.gz").exists()
    assert _no_partial_files(data)


def test_official_sources_are_the_known_public_urls():
    assert dl.SOURCES["cifar10"][0].urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    assert dl.SOURCES["cifar100"][0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert {f.filename for f in dl.SOURCES["fashion_mnist"]} == {
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
    }
    assert dl.urls_for("mnist", dl.SOURCES["mnist"][0], "http://h:1/x/") == ("http://h:1/x/mnist/train-images-idx3-ubyte.gz",)


def _symlink(tar):
    info = tarfile.TarInfo("top/link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tar.addfile(info)


@pytest.mark.parametrize(
    "members, extra, match",
    [
        ({"top/ok": b"1", "top/../../escape": b"x"}, None, "unsafe"),
        ({"/abs/evil": b"x"}, None, "unsafe"),
        ({"top/ok": b"1", "other/file": b"x"}, None, "outside"),
        ({"top/ok": b"1"}, _symlink, "link"),
    ],
    ids=["dotdot", "absolute", "outside-top", "symlink"],
)
def test_extract_tar_refuses_unsafe_archives(tmp_path, members, extra, match):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz(members, extra))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=match):
        dl.extract_tar(archive, dest, "top")
    assert not (dest / "top").exists()
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert _no_partial_files(dest)


def test_extract_tar_truncated_archive(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz({"top/big": bytes(range(256)) * 400})[:200])
    with pytest.raises(DataError, match="truncated or corrupt"):
        dl.extract_tar(archive, tmp_path / "dest", "top")
    assert not (tmp_path / "dest" / "top").exists()


def test_hand_copied_cifar_archive_is_checked_and_extracted(tmp_path, write_cifar10, monkeypatch):
    blob = _cifar_tar(tmp_path, write_cifar10)
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(blob)
    with pytest.raises(DataError, match="MD5"):  # the real checksum does not match this tiny archive
        load_dataset("cifar10", data_dir=data)
    assert not (data / "cifar-10-batches-py").exists()
    remote = dl.SOURCES["cifar10"][0]
    monkeypatch.setitem(dl.SOURCES, "cifar10",
                        (dl.RemoteFile(remote.filename, remote.urls, md5=hashlib.md5(blob).hexdigest()),))
    ds = load_dataset("cifar10", data_dir=data)  # no download=True: nothing is fetched
    assert len(ds.train_labels) == 10
    assert (data / "cifar-10-python.tar.gz").is_file()  # the user's copy is kept
