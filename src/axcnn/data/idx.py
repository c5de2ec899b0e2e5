"""Reading and writing IDX files (the MNIST / Fashion-MNIST format), gzipped or plain.

An IDX file is a 4-byte magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32
dimensions, then the data in C order. Only type 0x08 (unsigned byte) is used by the
datasets here. Any deviation -- bad magic, wrong type, truncated or over-long data, a broken
gzip stream -- raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from axcnn.errors import DataError

_UBYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot read IDX file {path}: {exc}. Expected a complete "
            f"{'gzip-compressed ' if path.name.endswith('.gz') else ''}IDX file; "
            "delete it and fetch it again (download=True) or restore it from a good copy."
        ) from exc


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (``.gz`` is decompressed) into a uint8 array."""
    path = Path(path)
    raw = _read_bytes(path)
    hint = "delete it and fetch it again (download=True) or restore it from a good copy."
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic {raw[:4].hex() or 'empty'}); {hint}")
    dtype, ndim = raw[2], raw[3]
    if dtype != _UBYTE:
        raise DataError(
            f"{path}: IDX data type 0x{dtype:02x} is not supported; expected 0x08 (unsigned byte). {hint}"
        )
    if ndim == 0 or (expected_ndim is not None and ndim != expected_ndim):
        raise DataError(
            f"{path}: IDX file has {ndim} dimensions; expected {expected_ndim or 'at least 1'}. "
            f"Is it the right file (images have 3 dimensions, labels 1)? {hint}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, need {header}); {hint}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX data has {len(raw) - header} bytes but the header dimensions {dims} "
            f"need {expected}; the file is truncated or corrupt. {hint}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path
