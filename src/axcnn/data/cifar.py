"""Reading CIFAR-10 / CIFAR-100 in their "python version" layout, safely.

The batches are pickles. Pickle can run arbitrary code, so they are read with
:class:`SafeUnpickler`, which resolves only the globals that numpy arrays and plain
containers need; anything else (``os.system``, ``subprocess.Popen``, ...) is refused. Each
loaded object is then checked to be the expected dict (``data``: uint8 array N x 3072 in
R, G, B planes; labels: ints in range) before it is used.

Layouts::

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta        (fine labels are used)
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from axcnn.errors import DataError

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = CIFAR10_TRAIN_FILES + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")

#: The only globals a CIFAR pickle may reference: numpy array/dtype reconstruction (numpy 1
#: and 2 module paths; ``_frombuffer`` is what pickle protocol 5 uses), ``_codecs.encode``
#: (how Python 3 writes bytes at protocol 2) and inert builtin container types.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("builtins", "str"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "bool"),
    }
)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` only when it is on the allow-list."""
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed in a dataset pickle"
            )
        return super().find_class(module, name)


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle with :class:`SafeUnpickler` (Python 2 strings decoded as latin-1)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"refusing to load {path}: {exc}. A CIFAR batch holds only numpy arrays, lists and "
            "bytes; this file is corrupt or not a genuine CIFAR file. Delete it and obtain the "
            "dataset again."
        ) from exc
    except Exception as exc:  # truncated pickles raise EOFError, ValueError, ...
        raise DataError(
            f"cannot read {path}: {type(exc).__name__}: {exc}. Expected a CIFAR python-version "
            "pickle; the file is truncated or corrupt. Delete it and obtain the dataset again."
        ) from exc


def _str_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(
            f"{path} holds a {type(obj).__name__}, expected a dict; not a CIFAR batch file."
        )
    out = {}
    for k, v in obj.items():
        if isinstance(k, bytes):
            k = k.decode("latin1")
        if not isinstance(k, str):
            raise DataError(f"{path}: unexpected key {k!r} (expected str or bytes keys).")
        out[k] = v
    return out


def _as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_cifar_batch(path: str | os.PathLike, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 images (N, 3, 32, 32), int64 labels (N,)), fully validated."""
    path = Path(path)
    d = _str_keys(safe_load_pickle(path), path)
    if "data" not in d or label_key not in d:
        raise DataError(
            f"{path}: keys {sorted(d)} lack 'data' and/or {label_key!r}; not a CIFAR batch "
            "of the expected kind (CIFAR-10 uses 'labels', CIFAR-100 'fine_labels')."
        )
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {desc}; expected a uint8 array of shape (N, 3072).")
    raw_labels = d[label_key]
    if isinstance(raw_labels, np.ndarray):
        ok = raw_labels.ndim == 1 and np.issubdtype(raw_labels.dtype, np.integer)
    else:
        ok = isinstance(raw_labels, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw_labels
        )
    if not ok:
        raise DataError(f"{path}: {label_key!r} is not a flat list of integers.")
    labels = np.asarray(raw_labels, dtype=np.int64)
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels; the file is corrupt.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{path}: labels range {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}; "
            "is this the right dataset?"
        )
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_meta(path: str | os.PathLike, key: str, num_classes: int) -> list[str]:
    """The class names stored under ``key`` in a meta file (validated count)."""
    path = Path(path)
    d = _str_keys(safe_load_pickle(path), path)
    names = d.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != num_classes or not all(
        isinstance(n, (str, bytes)) for n in names
    ):
        raise DataError(
            f"{path}: {key!r} is not a list of {num_classes} class names; not a valid CIFAR meta file."
        )
    return [_as_str(n) for n in names]


def read_cifar10_dir(directory: str | os.PathLike):
    """(train_x, train_y, test_x, test_y, classes) from a ``cifar-10-batches-py`` folder."""
    directory = Path(directory)
    parts = [read_cifar_batch(directory / f, "labels", 10) for f in CIFAR10_TRAIN_FILES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_cifar_batch(directory / "test_batch", "labels", 10)
    classes = read_cifar_meta(directory / "batches.meta", "label_names", 10)
    return train_x, train_y, test_x, test_y, classes


def read_cifar100_dir(directory: str | os.PathLike):
    """(train_x, train_y, test_x, test_y, classes) with fine labels from ``cifar-100-python``."""
    directory = Path(directory)
    train_x, train_y = read_cifar_batch(directory / "train", "fine_labels", 100)
    test_x, test_y = read_cifar_batch(directory / "test", "fine_labels", 100)
    classes = read_cifar_meta(directory / "meta", "fine_label_names", 100)
    return train_x, train_y, test_x, test_y, classes
