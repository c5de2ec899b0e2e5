"""``MultiplierLUT``: the lookup table of an approximate multiplier and its metadata.

Orientation (DESIGN.md): ``table[a, w]`` is the multiplier's output for operand A = the
activation code (row) and operand B = the weight code (column). Unsigned operands index by
their code (0 .. 2^b-1); signed operands by ``code + 2^(b-1)`` (row 0 is A = -2^(b-1)).
The table is int32; the two operands may have different bit widths.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LUTError

MIN_BITS = 1
MAX_BITS = 8


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """The smallest and largest operand code of a ``bits``-wide operand."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def operand_values(bits: int, signed: bool) -> np.ndarray:
    """The operand value of every table index, in index order (int64)."""
    lo, hi = code_range(bits, signed)
    return np.arange(lo, hi + 1, dtype=np.int64)


def index_offset(bits: int, signed: bool) -> int:
    """What to add to an operand code to get its table index (2^(b-1) when signed)."""
    return (1 << (bits - 1)) if signed else 0


def exact_table(a_bits: int, w_bits: int, signed: bool) -> np.ndarray:
    """The exact product table (int64) in the standard orientation."""
    return np.outer(operand_values(a_bits, signed), operand_values(w_bits, signed))


def output_range(a_bits: int, w_bits: int, signed: bool) -> tuple[int, int]:
    """The values an (a_bits x w_bits) multiplier's (a_bits + w_bits)-bit output can take."""
    out_bits = a_bits + w_bits
    if signed:
        return -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    return 0, (1 << out_bits) - 1


def _check_bits(bits: int, what: str) -> None:
    if not isinstance(bits, (int, np.integer)) or not MIN_BITS <= int(bits) <= MAX_BITS:
        raise LUTError(f"{what} must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}")


def bits_for_size(size: int, what: str) -> int:
    """The bit width whose code count is ``size`` (a power of two), or a LUTError."""
    bits = int(size).bit_length() - 1
    if size < 2 or (1 << bits) != size or bits > MAX_BITS:
        raise LUTError(
            f"{what} has {size} entries; expected a power of two 2^b with b in "
            f"{MIN_BITS}..{MAX_BITS} (e.g. 256 for 8-bit operands)"
        )
    return bits


@dataclass(frozen=True, eq=False)
class MultiplierLUT:
    """An approximate multiplier as a validated lookup table.

    Build one with :func:`axcnn.lut.load_lut`, :func:`axcnn.lut.builtin` or directly from an
    integer array: the constructor checks shape, integrality and output range and stores a
    read-only int32 copy.
    """

    table: np.ndarray
    signed: bool = False
    name: str = "lut"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        table = np.asarray(self.table)
        if table.dtype == object or table.dtype.kind not in "biuf":
            raise LUTError(
                f"LUT '{self.name}' has dtype {table.dtype}; expected a numeric array of "
                "integer values"
            )
        if table.ndim != 2:
            raise LUTError(
                f"LUT '{self.name}' has shape {table.shape}; expected a 2-D table "
                "(2^a_bits, 2^w_bits) indexed [activation, weight]"
            )
        a_bits = bits_for_size(table.shape[0], f"LUT '{self.name}' (rows = activation codes)")
        w_bits = bits_for_size(table.shape[1], f"LUT '{self.name}' (columns = weight codes)")
        if table.dtype.kind == "f":
            if not np.all(np.isfinite(table)):
                bad = int(np.count_nonzero(~np.isfinite(table)))
                raise LUTError(f"LUT '{self.name}' has {bad} NaN or infinite entries")
            if not np.all(table == np.round(table)):
                bad = int(np.count_nonzero(table != np.round(table)))
                raise LUTError(
                    f"LUT '{self.name}' has {bad} non-integer entries; a multiplier outputs integers"
                )
        lo, hi = output_range(a_bits, w_bits, self.signed)
        tmin, tmax = (float(table.min()), float(table.max()))
        if tmin < lo or tmax > hi:
            kind = "signed" if self.signed else "unsigned"
            hint = ""
            if not self.signed and tmin < 0:
                hint = " (negative entries: is this a signed multiplier? pass signed=True / --signed)"
            raise LUTError(
                f"LUT '{self.name}' has values in [{tmin:g}, {tmax:g}], outside the range "
                f"[{lo}, {hi}] of a {kind} {a_bits}x{w_bits}-bit multiplier's output{hint}"
            )
        t32 = np.ascontiguousarray(table.astype(np.int32))
        t32.setflags(write=False)
        object.__setattr__(self, "table", t32)
        object.__setattr__(self, "provenance", dict(self.provenance))

    # --- shape and ranges -------------------------------------------------------------
    @property
    def a_bits(self) -> int:
        return int(self.table.shape[0]).bit_length() - 1

    @property
    def w_bits(self) -> int:
        return int(self.table.shape[1]).bit_length() - 1

    @property
    def a_offset(self) -> int:
        """What to add to an activation code to get its row index."""
        return index_offset(self.a_bits, self.signed)

    @property
    def w_offset(self) -> int:
        """What to add to a weight code to get its column index."""
        return index_offset(self.w_bits, self.signed)

    @property
    def a_range(self) -> tuple[int, int]:
        return code_range(self.a_bits, self.signed)

    @property
    def w_range(self) -> tuple[int, int]:
        return code_range(self.w_bits, self.signed)

    @property
    def bits_label(self) -> str:
        """``8u``, ``4s`` or ``8x4u`` for mixed widths."""
        bits = str(self.a_bits) if self.a_bits == self.w_bits else f"{self.a_bits}x{self.w_bits}"
        return bits + ("s" if self.signed else "u")

    @property
    def max_abs(self) -> int:
        return int(np.abs(self.table.astype(np.int64)).max())

    # --- identity ---------------------------------------------------------------------
    @property
    def sha256(self) -> str:
        """Content hash of the table and its interpretation (bit widths, signedness)."""
        h = hashlib.sha256()
        h.update(f"axcnn-lut-v1:{self.a_bits}:{self.w_bits}:{int(self.signed)}:".encode())
        h.update(self.table.astype("<i4").tobytes())
        return h.hexdigest()

    @property
    def short_hash(self) -> str:
        return self.sha256[:8]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MultiplierLUT):
            return NotImplemented
        return self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return (
            f"MultiplierLUT(name={self.name!r}, {self.a_bits}x{self.w_bits} "
            f"{'signed' if self.signed else 'unsigned'}, sha256={self.short_hash})"
        )

    # --- derived tables ---------------------------------------------------------------
    def exact(self) -> np.ndarray:
        """The exact product table with this LUT's shape and signedness (int64)."""
        return exact_table(self.a_bits, self.w_bits, self.signed)

    def error(self) -> np.ndarray:
        """Error table ``E = LUT - exact product`` (int64)."""
        return self.table.astype(np.int64) - self.exact()

    def is_exact(self) -> bool:
        return bool(np.array_equal(self.table.astype(np.int64), self.exact()))

    def lookup(self, a_code: int, w_code: int) -> int:
        """The multiplier's output for one pair of operand codes."""
        lo_a, hi_a = self.a_range
        lo_w, hi_w = self.w_range
        if not (lo_a <= a_code <= hi_a and lo_w <= w_code <= hi_w):
            raise LUTError(
                f"codes ({a_code}, {w_code}) are outside [{lo_a}, {hi_a}] x [{lo_w}, {hi_w}]"
            )
        return int(self.table[a_code + self.a_offset, w_code + self.w_offset])

    def with_name(self, name: str) -> "MultiplierLUT":
        return MultiplierLUT(self.table, signed=self.signed, name=name, provenance=self.provenance)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (without the table)."""
        return {
            "name": self.name,
            "a_bits": self.a_bits,
            "w_bits": self.w_bits,
            "signed": self.signed,
            "sha256": self.sha256,
            "provenance": json.loads(json.dumps(self.provenance, default=str)),
        }
