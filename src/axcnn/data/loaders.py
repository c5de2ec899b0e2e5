"""``load_dataset``: find (or download) a dataset on disk and return an :class:`ImageDataset`.

Where files are looked for, in order:

1. the root folder: ``data_dir`` if given, else ``$AXCNN_DATA_DIR``, else ``~/.cache/axcnn/data``;
   inside it the dataset's conventional sub-folders (e.g. ``mnist``, ``MNIST/raw``,
   ``fashion-mnist``, ``FashionMNIST/raw``, ``cifar-10-batches-py``, ``cifar-100-python``)
   and then the root itself;
2. for Fashion-MNIST also ``/usr/share/datasets/fashion-mnist`` (Debian's
   ``apt-get install dataset-fashion-mnist``).

With ``download=True`` a missing dataset is fetched into the root (``ROOT/mnist``,
``ROOT/fashion-mnist``, ``ROOT/cifar-10-batches-py``, ``ROOT/cifar-100-python``). An official
CIFAR archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) copied into the root by
hand is checked against its MD5 and extracted on first use, without any download.

Per dataset:

| name | images | normalisation (mean / std) | augment |
|---|---|---|---|
| mnist | 1x32x32 (28x28 zero-padded, the classic LeNet-5 input) | 0.1307 / 0.3081 | NONE |
| fashion_mnist | 1x32x32 (zero-padded likewise) | 0.2860 / 0.3530 | NONE |
| cifar10 | 3x32x32 | 0.5 / 0.5 per channel | CROP_FLIP |
| cifar100 | 3x32x32, fine labels | (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761) | CROP_FLIP |
| synthetic | ``image_shape`` (default 1x32x32), generated | from the training set | NONE |
| imagefolder | ``data_dir/{train,test}/<class>/*`` | from the training set | NONE |

The same normalisation is used for train and test (the seed's MNIST mismatch is not kept).
The MNIST / Fashion-MNIST constants are the published ones, computed over the 28x28 images;
the zero border added by padding makes the mean of the 32x32 tensors somewhat lower, which
is harmless. (The seed *resized* MNIST to 32x32 instead of padding it; results are close but
not bit-comparable.)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from axcnn.data import download as dl
from axcnn.data.cifar import CIFAR10_FILES, CIFAR100_FILES, read_cifar10_dir, read_cifar100_dir
from axcnn.data.dataset import Augment, ImageDataset, channel_stats
from axcnn.data.idx import read_idx
from axcnn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "AXCNN_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/axcnn/data")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: IDX file stems; each may also end in ``.gz``.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

_SUBDIRS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw", "MNIST"),
    "fashion_mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    "cifar10": ("cifar-10-batches-py", "cifar/cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
    "cifar100": ("cifar-100-python", "cifar100/cifar-100-python", "cifar/cifar-100-python"),
}
#: Where a download puts each dataset, relative to the root.
_DOWNLOAD_SUBDIR = {
    "mnist": "mnist",
    "fashion_mnist": "fashion-mnist",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
}
_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


# ---------------------------------------------------------------------------- locations
def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The root folder: ``data_dir``, else ``$AXCNN_DATA_DIR``, else ``~/.cache/axcnn/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR.expanduser()


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every folder searched for dataset ``name`` (on-disk datasets only), in order."""
    key = _canonical(name)
    if key not in _SUBDIRS:
        raise ConfigError(
            f"dataset {name!r} has no standard on-disk location; only {sorted(_SUBDIRS)} are "
            "searched for (imagefolder reads data_dir itself, synthetic is generated)."
        )
    root = data_root(data_dir)
    dirs = [root / sub for sub in _SUBDIRS[key]] + [root]
    if key == "fashion_mnist":
        dirs.append(DEBIAN_FASHION_MNIST_DIR)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _describe(directory: Path, required: tuple[str, ...], finder: Callable[[Path, str], Path | None]) -> str:
    if not directory.is_dir():
        return f"{directory} (does not exist)"
    missing = [r for r in required if finder(directory, r) is None]
    return f"{directory} (missing {', '.join(missing)})"


def _plain_file(directory: Path, name: str) -> Path | None:
    p = directory / name
    return p if p.is_file() else None


def _find(dirs: list[Path], required: tuple[str, ...], finder) -> Path | None:
    for d in dirs:
        if d.is_dir() and all(finder(d, r) is not None for r in required):
            return d
    return None


def _offline_tips(key: str, root: Path) -> list[str]:
    """Ways to get dataset ``key`` without this machine downloading it."""
    tips = []
    if key == "fashion_mnist":
        tips.append(
            f"Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist (installs {DEBIAN_FASHION_MNIST_DIR})"
        )
    if key == "cifar10":
        tips.append(
            "the JPEG q75 development copy: python ../shared/data/cifar10_to_batches.py DIR, "
            "then pass data_dir=DIR (or --data-dir DIR)"
        )
    if key in ("cifar10", "cifar100"):
        archive = dl.SOURCES[key][0].filename
        tips.append(f"copy the official {archive} into {root} (it is checked and extracted on first use)")
    tips.append(f"put the files in a folder and pass data_dir= (--data-dir), or set ${DATA_DIR_ENV}")
    return tips


def _how_to_get(key: str, root: Path) -> list[str]:
    dest = root / _DOWNLOAD_SUBDIR[key]
    online = f"online: load_dataset({key!r}, download=True) or the CLI flag --download (saves to {dest})"
    return [online] + _offline_tips(key, root)


def _missing(key: str, dirs: list[Path], required: tuple[str, ...], finder, root: Path, what: str) -> DataError:
    looked = "; ".join(_describe(d, required, finder) for d in dirs)
    tips = "; or ".join(_how_to_get(key, root))
    return DataError(
        f"{_TITLES[key]} not found: expected {what} in one of: {looked}. To get it: {tips}"
    )


# ---------------------------------------------------------------------------- IDX datasets
def _idx_dataset(key: str, data_dir, download: bool, mirror: str | None, timeout: float) -> ImageDataset:
    dirs = candidate_dirs(key, data_dir)
    root = data_root(data_dir)
    found = _find(dirs, IDX_FILES, _idx_path)
    if found is None and download:
        dest = root / _DOWNLOAD_SUBDIR[key]
        for remote in dl.SOURCES[key]:
            stem = remote.filename.removesuffix(".gz")
            if _idx_path(dest, stem) is None:
                dl.download_file(
                    dl.urls_for(key, remote, mirror), dest / remote.filename, md5=remote.md5,
                    timeout=timeout, offline_hint="; ".join(_offline_tips(key, root)),
                )
        found = _find([dest], IDX_FILES, _idx_path)
    if found is None:
        what = "the files " + ", ".join(f"{s}[.gz]" for s in IDX_FILES)
        raise _missing(key, dirs, IDX_FILES, _idx_path, root, what)
    log.info("loading %s from %s", _TITLES[key], found)
    paths = [_idx_path(found, s) for s in IDX_FILES]
    splits = []
    for img_path, lbl_path in ((paths[0], paths[1]), (paths[2], paths[3])):
        assert img_path is not None and lbl_path is not None
        images = read_idx(img_path, expected_ndim=3)
        labels = read_idx(lbl_path, expected_ndim=1)
        if images.shape[1:] != (28, 28):
            raise DataError(
                f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28 "
                f"for {_TITLES[key]}; is this the right file?"
            )
        if len(images) != len(labels):
            raise DataError(
                f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels; "
                "one of them is corrupt or from another release. Fetch both again."
            )
        if len(labels) and labels.max() > 9:
            raise DataError(f"{lbl_path}: label {int(labels.max())} is out of range 0..9; the file is corrupt.")
        x = torch.from_numpy(images).unsqueeze(1)
        # 28x28 -> 32x32 with a 2-pixel zero border: the classic LeNet-5 input size
        x = F.pad(x, (2, 2, 2, 2), mode="constant", value=0)
        splits.append((x.contiguous(), torch.from_numpy(labels.astype(np.int64))))
    mean, std = {"mnist": ((0.1307,), (0.3081,)), "fashion_mnist": ((0.2860,), (0.3530,))}[key]
    classes = MNIST_CLASSES if key == "mnist" else FASHION_MNIST_CLASSES
    return ImageDataset(
        name=key, train_images=splits[0][0], train_labels=splits[0][1],
        test_images=splits[1][0], test_labels=splits[1][1],
        classes=list(classes), mean=mean, std=std, augment=Augment.NONE,
    )


# ---------------------------------------------------------------------------- CIFAR
def _cifar_dataset(key: str, data_dir, download: bool, mirror: str | None, timeout: float) -> ImageDataset:
    required = CIFAR10_FILES if key == "cifar10" else CIFAR100_FILES
    dirs = candidate_dirs(key, data_dir)
    root = data_root(data_dir)
    found = _find(dirs, required, _plain_file)
    remote = dl.SOURCES[key][0]
    archive = root / remote.filename
    top = _DOWNLOAD_SUBDIR[key]
    if found is None and archive.is_file():
        # an official archive copied into the root by hand: checked, extracted once, kept
        log.info("extracting %s", archive)
        dl.verify_md5(archive, remote.md5)
        dl.extract_tar(archive, root, top)
        found = _find([root / top], required, _plain_file)
    if found is None and download:
        dl.download_file(
            dl.urls_for(key, remote, mirror), archive, md5=remote.md5, timeout=timeout,
            offline_hint="; ".join(_offline_tips(key, root)),
        )
        dl.extract_tar(archive, root, top)
        archive.unlink()
        found = _find([root / top], required, _plain_file)
    if found is None:
        raise _missing(key, dirs, required, _plain_file, root, "the files " + ", ".join(required))
    log.info("loading %s from %s", _TITLES[key], found)
    reader = read_cifar10_dir if key == "cifar10" else read_cifar100_dir
    train_x, train_y, test_x, test_y, classes = reader(found)
    if key == "cifar10":
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    else:
        mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
    return ImageDataset(
        name=key,
        train_images=torch.from_numpy(np.ascontiguousarray(train_x)),
        train_labels=torch.from_numpy(train_y),
        test_images=torch.from_numpy(np.ascontiguousarray(test_x)),
        test_labels=torch.from_numpy(test_y),
        classes=classes, mean=mean, std=std, augment=Augment.CROP_FLIP,
    )


# ---------------------------------------------------------------------------- others
def _from_arrays(name: str, arrays, augment: Augment = Augment.NONE) -> ImageDataset:
    train_x, train_y, test_x, test_y, classes = arrays
    train_x, test_x = torch.as_tensor(train_x), torch.as_tensor(test_x)
    mean, std = channel_stats(train_x)
    return ImageDataset(
        name=name, train_images=train_x, train_labels=torch.as_tensor(train_y, dtype=torch.int64),
        test_images=test_x, test_labels=torch.as_tensor(test_y, dtype=torch.int64),
        classes=list(classes), mean=mean, std=std, augment=augment,
    )


def _synthetic(options: dict[str, Any]) -> ImageDataset:
    from axcnn.data.synthetic import make_synthetic

    return _from_arrays("synthetic", make_synthetic(**options))


def _imagefolder(data_dir) -> ImageDataset:
    from axcnn.data.imagefolder import read_image_folder

    if data_dir is None:
        raise ConfigError(
            "the 'imagefolder' dataset needs data_dir (--data-dir): a folder with "
            "train/<class>/*.png and test/<class>/*.png."
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected {root}/train/<class>/ and {root}/test/<class>/.")
    return _from_arrays("imagefolder", read_image_folder(root))


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _DatasetSpec:
    name: str
    description: str
    options: tuple[str, ...] = ()


_DATASETS = {
    s.name: s
    for s in (
        _DatasetSpec("mnist", "MNIST handwritten digits, IDX files, padded to 1x32x32"),
        _DatasetSpec("fashion_mnist", "Fashion-MNIST, IDX files, padded to 1x32x32"),
        _DatasetSpec("cifar10", "CIFAR-10, python pickle batches, 3x32x32"),
        _DatasetSpec("cifar100", "CIFAR-100 (fine labels), python pickles, 3x32x32"),
        _DatasetSpec(
            "synthetic", "seeded, learnable in-memory 10-class patterns",
            ("image_shape", "train_size", "test_size", "seed", "num_classes", "noise_std", "max_shift", "grid"),
        ),
        _DatasetSpec("imagefolder", "images in data_dir/{train,test}/<class>/"),
    )
}
_ALIASES = {"fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist", "cifar_10": "cifar10",
            "cifar_100": "cifar100", "image_folder": "imagefolder"}


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}; expected one of {list_datasets()}. Check the spelling."
        )
    return key


def list_datasets() -> list[str]:
    """The names :func:`load_dataset` accepts, sorted."""
    return sorted(_DATASETS)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    mirror: str | None = None,
    timeout: float = dl.DEFAULT_TIMEOUT,
    **options: Any,
) -> ImageDataset:
    """Load a dataset by name (see :func:`list_datasets`) into an :class:`ImageDataset` on the CPU.

    Args:
        name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``synthetic`` or ``imagefolder``.
        data_dir: the root folder to search (and download into); see the module docstring.
        download: fetch the files when they are not found.
        mirror: base URL replacing the official ones (``{mirror}/{name}/{file}``); defaults to
            ``$AXCNN_DATASET_MIRROR``.
        timeout: seconds to wait on a stalled connection.
        options: only for ``synthetic``: ``image_shape=(1, 32, 32)``, ``train_size``,
            ``test_size``, ``seed``, ``num_classes``, ``noise_std``, ``max_shift``, ``grid``.
    """
    key = _canonical(name)
    spec = _DATASETS[key]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ConfigError(
            f"load_dataset({key!r}) got unknown option(s) {unknown}; "
            + (f"it accepts {list(spec.options)}." if spec.options else "it takes no extra options.")
        )
    if key in ("mnist", "fashion_mnist"):
        return _idx_dataset(key, data_dir, download, mirror, timeout)
    if key in ("cifar10", "cifar100"):
        return _cifar_dataset(key, data_dir, download, mirror, timeout)
    if key == "synthetic":
        return _synthetic(options)
    return _imagefolder(data_dir)
