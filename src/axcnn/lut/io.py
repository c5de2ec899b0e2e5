"""Reading and writing multiplier LUTs.

Formats (chosen by file extension):

- ``.npy``: the seed's format: a square (2^b, 2^b) array of any integer-valued numeric dtype,
  unsigned unless told otherwise. Pickled/object arrays are refused.
- ``.npz``: axcnn's own format: ``table`` (int32) plus ``meta``, a JSON string with
  ``format``, ``a_bits``, ``w_bits``, ``signed``, ``name`` and ``provenance``.
- ``.bin``: TFApprox-style, 65,536 little-endian 16-bit words, entry ``(a << 8) | b`` for the
  8-bit operand bit patterns a, b (uint16 products; int16 two's complement when signed).
- ``builtin:NAME[@8u]``: a built-in functional multiplier (see :mod:`axcnn.lut.families`).
- ``FILE.npz:KEY``: the array KEY of any ``.npz`` holding several tables (e.g. a library of
  published multipliers), interpreted like a seed ``.npy`` table (unsigned unless told).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path
from ..errors import LUTError
from .core import MultiplierLUT
from .families import builtin

NPZ_FORMAT = "axcnn-lut/1"
SUPPORTED = (".npy", ".npz", ".bin")


def load_lut(source: Any, signed: bool | None = None, *, bits: int | None = None,
             name: str | None = None) -> MultiplierLUT:
    """Load and validate a LUT from a path, ``builtin:`` name, array or ``MultiplierLUT``.

    ``signed`` None means: the file's own metadata (``.npz``), else unsigned. ``bits``, when
    given, must match the LUT's operand widths (built-ins are generated at that width).
    """
    if isinstance(source, MultiplierLUT):
        lut = source
    elif isinstance(source, np.ndarray):
        lut = MultiplierLUT(source, signed=bool(signed), name=name or "array",
                            provenance={"source": "array"})
    elif isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.startswith("builtin:"):
            lut = builtin(text, bits=bits, signed=signed)
        else:
            lut = _load_file(Path(text), signed, name)
    else:
        raise LUTError(
            f"cannot load a LUT from {type(source).__name__}; expected a file path, "
            "'builtin:NAME', a numpy array or a MultiplierLUT"
        )
    if signed is not None and lut.signed != bool(signed):
        raise LUTError(
            f"LUT '{lut.name}' is {'signed' if lut.signed else 'unsigned'} but "
            f"{'signed' if signed else 'unsigned'} operands were requested"
        )
    if bits is not None and (lut.a_bits != bits or lut.w_bits != bits):
        raise LUTError(
            f"LUT '{lut.name}' is {lut.a_bits}x{lut.w_bits}-bit (shape {lut.table.shape}) but "
            f"--bits is {bits}; pass --bits {lut.a_bits} or a {bits}-bit LUT"
        )
    if name and lut.name != name:
        lut = lut.with_name(name)
    return lut


def _load_member(path: Path, key: str, signed: bool | None, name: str | None) -> MultiplierLUT:
    try:
        with np.load(path, allow_pickle=False) as z:
            if key not in z.files:
                raise LUTError(f"'{path}' has no table '{key}'; it holds: {', '.join(z.files)}")
            table = z[key]
    except LUTError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise LUTError(f"'{path}' is not a readable .npz file: {exc}") from None
    return MultiplierLUT(table, signed=bool(signed), name=name or key,
                         provenance={"source": "file", "path": str(path), "format": "npz", "key": key})


def _load_file(path: Path, signed: bool | None, name: str | None) -> MultiplierLUT:
    if not path.is_file() and ".npz:" in str(path):
        file, key = str(path).rsplit(":", 1)
        if Path(file).is_file():
            return _load_member(Path(file), key, signed, name)
    if not path.is_file():
        raise LUTError(f"LUT file '{path}' does not exist")
    ext = path.suffix.lower()
    stem = name or path.stem
    prov = {"source": "file", "path": str(path), "format": ext.lstrip(".")}
    if ext == ".npy":
        try:
            table = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise LUTError(
                f"LUT file '{path}' is not a plain numeric .npy array ({exc}); object arrays and "
                "pickles are never loaded"
            ) from None
        except (OSError, EOFError) as exc:
            raise LUTError(f"LUT file '{path}' is not a readable .npy file: {exc}") from None
        if table.ndim == 2 and table.shape[0] != table.shape[1]:
            raise LUTError(
                f"LUT file '{path}' has shape {table.shape}; the seed's .npy format is square "
                "(2^b, 2^b); use axcnn's .npz format for operands of different widths"
            )
        return MultiplierLUT(table, signed=bool(signed), name=stem, provenance=prov)
    if ext == ".npz":
        return _load_npz(path, signed, stem if name else None, prov)
    if ext == ".bin":
        raw = np.fromfile(path, dtype="<u2")
        if raw.size != 65536:
            raise LUTError(
                f"LUT file '{path}' has {raw.size} 16-bit words; a TFApprox .bin table has 65536"
            )
        if signed:
            raw = raw.view("<i2")
            idx = (np.arange(256) - 128) & 0xFF
            table = raw.reshape(256, 256)[np.ix_(idx, idx)]
        else:
            table = raw.reshape(256, 256)
        return MultiplierLUT(table.astype(np.int64), signed=bool(signed), name=stem,
                             provenance=prov)
    raise LUTError(
        f"LUT file '{path}' has an unknown extension '{ext}'; expected one of "
        f"{', '.join(SUPPORTED)} or 'builtin:NAME'"
    )


def _load_npz(path: Path, signed: bool | None, name: str | None, prov: dict) -> MultiplierLUT:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "table" not in z.files or "meta" not in z.files:
                raise LUTError(
                    f"LUT file '{path}' has arrays {z.files}; an axcnn .npz LUT holds 'table' "
                    "and 'meta' (write one with 'axcnn lut convert')"
                )
            table = z["table"]
            meta = json.loads(str(z["meta"]))
    except LUTError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise LUTError(f"LUT file '{path}' is not a readable axcnn .npz LUT: {exc}") from None
    if meta.get("format") != NPZ_FORMAT:
        raise LUTError(f"LUT file '{path}' has format {meta.get('format')!r}; expected {NPZ_FORMAT!r}")
    is_signed = bool(meta.get("signed", False))
    if signed is not None and bool(signed) != is_signed:
        raise LUTError(
            f"LUT file '{path}' is stored as {'signed' if is_signed else 'unsigned'} but "
            f"{'signed' if signed else 'unsigned'} was requested"
        )
    lut = MultiplierLUT(table, signed=is_signed, name=name or meta.get("name") or path.stem,
                        provenance={**meta.get("provenance", {}), "loaded_from": str(path)})
    for key in ("a_bits", "w_bits"):
        if key in meta and int(meta[key]) != getattr(lut, key):
            raise LUTError(f"LUT file '{path}': meta {key}={meta[key]} but the table has "
                           f"{getattr(lut, key)}")
    return lut


def save_lut(lut: MultiplierLUT, path: str | os.PathLike) -> Path:
    """Write ``lut`` to ``path`` (format from the extension), atomically."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise LUTError(f"cannot write '{path}': extension must be one of {', '.join(SUPPORTED)}")
    with atomic_path(path, ext) as tmp:
        if ext == ".npy":
            np.save(tmp, lut.table)
        elif ext == ".npz":
            meta = {"format": NPZ_FORMAT, **lut.metadata()}
            np.savez_compressed(tmp, table=lut.table, meta=np.array(json.dumps(meta)))
        else:
            if lut.a_bits != 8 or lut.w_bits != 8:
                raise LUTError(f"the .bin format holds 8x8-bit tables; '{lut.name}' is "
                               f"{lut.a_bits}x{lut.w_bits}")
            if lut.signed:
                idx = (np.arange(256) + 128) & 0xFF  # bit pattern -> table index
                raw = lut.table[np.ix_(idx, idx)].astype("<i2")
            else:
                raw = lut.table.astype("<u2")
            raw.tofile(tmp)
    return path
