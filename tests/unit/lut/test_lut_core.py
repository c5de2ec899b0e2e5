"""MultiplierLUT: validation, identity (sha256), lookup, error tables."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from axcnn.errors import LUTError
from axcnn.lut import MultiplierLUT, code_range, exact_table, operand_values, output_range


def exact_lut(bits: int = 8, signed: bool = False, w_bits: int | None = None) -> MultiplierLUT:
    return MultiplierLUT(exact_table(bits, w_bits or bits, signed), signed=signed, name="exact")


# --- helpers of the module ------------------------------------------------------------------

def test_code_and_output_ranges():
    assert code_range(8, False) == (0, 255)
    assert code_range(8, True) == (-128, 127)
    assert code_range(4, True) == (-8, 7)
    assert output_range(8, 8, False) == (0, 65535)
    assert output_range(8, 8, True) == (-32768, 32767)
    assert output_range(4, 8, False) == (0, 4095)
    assert operand_values(3, True).tolist() == [-4, -3, -2, -1, 0, 1, 2, 3]


def test_exact_table_orientation():
    t = exact_table(2, 3, False)
    assert t.shape == (4, 8)
    assert t[3, 5] == 15 and t[1, 7] == 7
    ts = exact_table(4, 4, True)
    # row 0 is A = -8, column 15 is W = 7
    assert ts[0, 15] == -56 and ts[8, 8] == 0 and ts[0, 0] == 64


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(256,), (4, 4, 4), (1, 1), (3, 4), (4, 6), (12, 16), (512, 512), (4, 512)])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(LUTError):
        MultiplierLUT(np.zeros(shape, dtype=np.int64))


def test_non_power_of_two_message_names_the_expectation():
    with pytest.raises(LUTError, match="power of two"):
        MultiplierLUT(np.zeros((255, 255), dtype=np.int64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(bad):
    t = exact_table(4, 4, False).astype(np.float64)
    t[3, 2] = bad
    with pytest.raises(LUTError, match="NaN or infinite"):
        MultiplierLUT(t)


def test_non_integer_floats_are_refused():
    t = exact_table(4, 4, False).astype(np.float64)
    t[1, 1] += 0.5
    with pytest.raises(LUTError, match="non-integer"):
        MultiplierLUT(t)


def test_integer_valued_floats_are_accepted_and_stored_as_int32():
    t = exact_table(4, 4, False).astype(np.float32)
    lut = MultiplierLUT(t)
    assert lut.table.dtype == np.int32
    assert np.array_equal(lut.table, exact_table(4, 4, False))
    assert lut.is_exact()


@pytest.mark.parametrize("arr", [
    np.array([[1, 2], [3, 4]], dtype=object),
    np.array([["1", "2"], ["3", "4"]]),
    np.array([[1 + 0j, 2], [3, 4]]),
])
def test_non_numeric_dtypes_are_refused(arr):
    with pytest.raises(LUTError, match="dtype"):
        MultiplierLUT(arr)


def test_unsigned_out_of_range_values():
    t = exact_table(8, 8, False)
    t[0, 0] = -1
    with pytest.raises(LUTError, match="signed"):  # the hint suggests a signed multiplier
        MultiplierLUT(t)
    t = exact_table(8, 8, False)
    t[255, 255] = 65536
    with pytest.raises(LUTError, match="outside"):
        MultiplierLUT(t)
    t[255, 255] = 65535  # the largest 16-bit output is fine
    assert MultiplierLUT(t).table[255, 255] == 65535


def test_signed_out_of_range_values():
    t = exact_table(4, 4, True)
    t[0, 0] = 128  # 8-bit signed output is -128..127
    with pytest.raises(LUTError):
        MultiplierLUT(t, signed=True)
    t[0, 0] = -129
    with pytest.raises(LUTError):
        MultiplierLUT(t, signed=True)
    t[0, 0] = 127
    assert MultiplierLUT(t, signed=True).lookup(-8, -8) == 127


def test_signed_table_refused_as_unsigned():
    with pytest.raises(LUTError):
        MultiplierLUT(exact_table(8, 8, True), signed=False)


@pytest.mark.parametrize("a_bits,w_bits", [(4, 8), (8, 4), (2, 3), (1, 8)])
def test_mixed_widths(a_bits, w_bits):
    lut = exact_lut(a_bits, False, w_bits)
    assert (lut.a_bits, lut.w_bits) == (a_bits, w_bits)
    assert lut.table.shape == (1 << a_bits, 1 << w_bits)
    assert lut.bits_label == f"{a_bits}x{w_bits}u"
    assert lut.is_exact()
    # the output range of a mixed multiplier is a_bits + w_bits wide
    t = exact_table(a_bits, w_bits, False)
    t[0, 0] = 1 << (a_bits + w_bits)
    with pytest.raises(LUTError):
        MultiplierLUT(t)


def test_mixed_widths_signed_offsets():
    lut = exact_lut(4, True, 8)
    assert lut.a_offset == 8 and lut.w_offset == 128
    assert lut.lookup(-8, 127) == -1016
    assert lut.bits_label == "4x8s"


def test_table_is_read_only_copy():
    src = exact_table(4, 4, False)
    lut = MultiplierLUT(src)
    src[1, 1] = 99
    assert lut.table[1, 1] == 1
    with pytest.raises(ValueError):
        lut.table[1, 1] = 5
    assert lut.table.flags.c_contiguous


# --- identity ---------------------------------------------------------------------------------

def test_sha256_is_the_documented_digest():
    """The hash format is part of run names and checkpoints: it must never change silently."""
    lut = exact_lut(4, False)
    h = hashlib.sha256(b"axcnn-lut-v1:4:4:0:" + exact_table(4, 4, False).astype("<i4").tobytes())
    assert lut.sha256 == h.hexdigest()
    assert lut.short_hash == h.hexdigest()[:8]


def test_sha256_stability():
    t = exact_table(8, 8, False)
    a = MultiplierLUT(t, name="a")
    b = MultiplierLUT(t.astype(np.float64), name="b", provenance={"x": 1})
    c = MultiplierLUT(t.astype(np.uint16))
    assert a.sha256 == b.sha256 == c.sha256      # name, provenance, input dtype don't matter
    assert a == b and hash(a) == hash(b)
    assert a.with_name("renamed").sha256 == a.sha256


def test_sha256_sensitivity():
    t = exact_table(8, 8, False)
    base = MultiplierLUT(t)
    t2 = t.copy()
    t2[17, 200] += 1
    assert MultiplierLUT(t2).sha256 != base.sha256
    assert MultiplierLUT(t2) != base


def test_signedness_changes_the_hash():
    t = np.zeros((16, 16), dtype=np.int64)  # valid both ways
    u, s = MultiplierLUT(t, signed=False), MultiplierLUT(t, signed=True)
    assert u.sha256 != s.sha256
    assert u != s


def test_shape_changes_the_hash():
    z1 = MultiplierLUT(np.zeros((16, 256), dtype=np.int64))
    z2 = MultiplierLUT(np.zeros((256, 16), dtype=np.int64))
    assert z1.sha256 != z2.sha256


def test_metadata_is_json_ready():
    import json

    lut = MultiplierLUT(exact_table(4, 4, True), signed=True, name="m", provenance={"p": object()})
    meta = json.loads(json.dumps(lut.metadata()))
    assert meta["a_bits"] == 4 and meta["w_bits"] == 4 and meta["signed"] is True
    assert meta["sha256"] == lut.sha256 and meta["name"] == "m"
    assert "table" not in meta


# --- lookup, error, is_exact -------------------------------------------------------------------

def test_lookup_unsigned():
    lut = exact_lut(4, False)
    assert lut.lookup(15, 15) == 225
    assert lut.lookup(0, 7) == 0
    with pytest.raises(LUTError):
        lut.lookup(16, 0)
    with pytest.raises(LUTError):
        lut.lookup(-1, 0)


def test_lookup_signed_uses_offsets():
    t = exact_table(4, 4, True)
    t[0, 15] = -50   # (A=-8, W=7)
    t[8, 8] = 3      # (0, 0)
    lut = MultiplierLUT(t, signed=True)
    assert lut.a_offset == 8 and lut.w_offset == 8
    assert lut.lookup(-8, 7) == -50
    assert lut.lookup(0, 0) == 3
    assert lut.lookup(-8, -8) == 64
    assert lut.lookup(-1, 7) == -7
    assert lut.lookup(7, -3) == -21
    for bad in [(8, 0), (-9, 0), (0, 8), (0, -9)]:
        with pytest.raises(LUTError):
            lut.lookup(*bad)


@pytest.mark.parametrize("signed", [False, True])
def test_error_and_is_exact(signed):
    lut = exact_lut(6, signed)
    assert lut.is_exact()
    assert not lut.error().any()
    t = exact_table(6, 6, signed)
    t[5, 9] -= 7
    t[60, 1] += 2
    bad = MultiplierLUT(t, signed=signed)
    assert not bad.is_exact()
    err = bad.error()
    assert err.dtype == np.int64
    assert err[5, 9] == -7 and err[60, 1] == 2
    assert np.count_nonzero(err) == 2
    assert np.array_equal(bad.exact(), exact_table(6, 6, signed))


def test_max_abs_and_repr():
    lut = exact_lut(8, True)
    assert lut.max_abs == 16384
    assert "signed" in repr(lut) and lut.short_hash in repr(lut)
