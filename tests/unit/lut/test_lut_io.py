"""Reading and writing LUTs: .npy (seed), .npz (axcnn), .bin (TFApprox), builtin: names."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from axcnn.errors import LUTError
from axcnn.lut import MultiplierLUT, builtin, exact_table, load_lut, save_lut


def approx_table(bits: int, signed: bool, seed: int = 0) -> np.ndarray:
    """An exact table with some deterministic errors (valid for the bit width)."""
    rng = np.random.default_rng(seed)
    t = exact_table(bits, bits, signed)
    mask = rng.random(t.shape) < 0.3
    t = t - mask * (np.abs(t) // 7) * np.sign(t)
    return t


def only_file(tmp_path, name):
    """The directory holds exactly ``name`` (no temp files left behind)."""
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


# --- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".npy", ".npz", ".bin"])
@pytest.mark.parametrize("signed", [False, True])
def test_round_trip(tmp_path, ext, signed):
    lut = MultiplierLUT(approx_table(8, signed), signed=signed, name="rt")
    path = save_lut(lut, tmp_path / f"rt{ext}")
    only_file(tmp_path, f"rt{ext}")
    back = load_lut(path, signed=signed)
    assert back.signed is signed
    assert np.array_equal(back.table, lut.table)
    assert back.sha256 == lut.sha256
    assert back.name == "rt"


@pytest.mark.parametrize("a_bits,w_bits,signed", [(4, 4, True), (4, 8, False), (8, 2, True), (3, 5, False)])
def test_npz_round_trip_keeps_metadata(tmp_path, a_bits, w_bits, signed):
    t = exact_table(a_bits, w_bits, signed)
    lut = MultiplierLUT(t, signed=signed, name="mine", provenance={"origin": "test", "k": 3})
    path = save_lut(lut, tmp_path / "sub" / "x.npz")  # parent is created
    back = load_lut(path)  # signedness from the file's metadata
    assert back.signed is signed
    assert (back.a_bits, back.w_bits) == (a_bits, w_bits)
    assert back.name == "mine"
    assert back.provenance["origin"] == "test" and back.provenance["k"] == 3
    assert back == lut
    with np.load(path, allow_pickle=False) as z:
        assert z["table"].dtype == np.int32
        meta = json.loads(str(z["meta"]))
    assert meta["format"] == "axcnn-lut/1" and meta["sha256"] == lut.sha256


def test_load_lut_name_override(tmp_path):
    save_lut(MultiplierLUT(exact_table(4, 4, False), name="orig"), tmp_path / "a.npz")
    assert load_lut(tmp_path / "a.npz", name="other").name == "other"
    assert load_lut(str(tmp_path / "a.npz")).name == "orig"


def test_npy_name_is_the_file_stem(tmp_path):
    np.save(tmp_path / "mul8u_foo.npy", exact_table(8, 8, False))
    lut = load_lut(tmp_path / "mul8u_foo.npy")
    assert lut.name == "mul8u_foo"
    assert lut.provenance["format"] == "npy"


# --- the .bin layout ------------------------------------------------------------------------

def test_bin_layout_unsigned(tmp_path):
    lut = MultiplierLUT(approx_table(8, False, seed=3))
    save_lut(lut, tmp_path / "u.bin")
    raw = np.fromfile(tmp_path / "u.bin", dtype="<u2")
    assert raw.size == 65536
    for a, b in [(0, 0), (1, 2), (200, 3), (255, 255), (17, 254)]:
        assert raw[(a << 8) | b] == lut.table[a, b]


def test_bin_layout_signed_twos_complement(tmp_path):
    lut = MultiplierLUT(approx_table(8, True, seed=4), signed=True)
    save_lut(lut, tmp_path / "s.bin")
    raw = np.fromfile(tmp_path / "s.bin", dtype="<i2")
    for a, b in [(-128, -128), (-1, 5), (5, -1), (127, -128), (0, 0), (-77, 99)]:
        word = ((a & 0xFF) << 8) | (b & 0xFF)
        assert raw[word] == lut.lookup(a, b)


def test_bin_written_by_hand_loads_signed(tmp_path):
    """A TFApprox file built from bit patterns loads into the standard orientation."""
    raw = np.zeros(65536, dtype="<i2")
    ab = np.arange(256)
    pa, pb = np.meshgrid(ab, ab, indexing="ij")
    va = np.where(pa >= 128, pa - 256, pa)      # two's complement operand values
    vb = np.where(pb >= 128, pb - 256, pb)
    raw[(pa << 8) | pb] = va * vb
    raw.tofile(tmp_path / "hand.bin")
    lut = load_lut(tmp_path / "hand.bin", signed=True)
    assert lut.is_exact()
    assert lut.lookup(-128, -128) == 16384 and lut.lookup(-3, 7) == -21
    # read as unsigned, the same words mean something else (no longer the exact product)
    as_unsigned = load_lut(tmp_path / "hand.bin")
    assert not as_unsigned.signed and not as_unsigned.is_exact()
    assert as_unsigned.table[255, 255] == 1  # pattern 0xFF*0xFF is (-1)*(-1)


def test_bin_needs_8x8(tmp_path):
    with pytest.raises(LUTError, match="8x8"):
        save_lut(MultiplierLUT(exact_table(4, 4, False)), tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_bin_truncated(tmp_path):
    np.zeros(65535, dtype="<u2").tofile(tmp_path / "t.bin")
    with pytest.raises(LUTError, match="65536"):
        load_lut(tmp_path / "t.bin")


# --- the seed's .npy -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.uint16, np.int32, np.float32])
def test_seed_npy_dtypes_load_unsigned(tmp_path, dtype):
    t = approx_table(8, False, seed=5)
    np.save(tmp_path / "seed.npy", t.astype(dtype))
    lut = load_lut(tmp_path / "seed.npy")
    assert lut.signed is False
    assert lut.table.dtype == np.int32
    assert np.array_equal(lut.table, t)


def test_seed_npy_non_square_refused(tmp_path):
    np.save(tmp_path / "r.npy", np.zeros((16, 256), dtype=np.int64))
    with pytest.raises(LUTError, match="square"):
        load_lut(tmp_path / "r.npy")


def test_seed_npy_float_fraction_refused(tmp_path):
    t = exact_table(4, 4, False).astype(np.float64)
    t[2, 2] = 4.25
    np.save(tmp_path / "f.npy", t)
    with pytest.raises(LUTError, match="non-integer"):
        load_lut(tmp_path / "f.npy")


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_npy_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty((4, 4), dtype=object)
    arr[:] = 0
    arr[0, 0] = _Payload(marker)
    np.save(tmp_path / "evil.npy", arr, allow_pickle=True)
    with pytest.raises(LUTError, match="pickle"):
        load_lut(tmp_path / "evil.npy")
    assert not marker.exists()
    # the payload is live: a loader that unpickled it would have created the marker
    loaded = np.load(tmp_path / "evil.npy", allow_pickle=True)
    loaded[0, 0].close()
    assert marker.exists()


def test_object_npz_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", table=np.array([[1, 2], [3, 4]], dtype=object),
             meta=np.array(json.dumps({"format": "axcnn-lut/1"})))
    with pytest.raises(LUTError):
        load_lut(tmp_path / "o.npz")


# --- broken files ---------------------------------------------------------------------------

def test_truncated_npy(tmp_path):
    np.save(tmp_path / "full.npy", exact_table(8, 8, False))
    data = (tmp_path / "full.npy").read_bytes()
    for cut, name in [(len(data) // 2, "half.npy"), (50, "header.npy"), (0, "empty.npy")]:
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(LUTError):
            load_lut(tmp_path / name)


def test_garbage_npy(tmp_path):
    (tmp_path / "g.npy").write_bytes(b"this is not numpy at all" * 10)
    with pytest.raises(LUTError):
        load_lut(tmp_path / "g.npy")


def test_corrupt_npz(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(LUTError):
        load_lut(tmp_path / "c.npz")
    lut = MultiplierLUT(exact_table(8, 8, False))
    save_lut(lut, tmp_path / "ok.npz")
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LUTError):
        load_lut(tmp_path / "trunc.npz")


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "m.npz", lut=exact_table(4, 4, False))
    with pytest.raises(LUTError, match="'table'"):
        load_lut(tmp_path / "m.npz")


def test_npz_bad_meta(tmp_path):
    t = exact_table(4, 4, False).astype(np.int32)
    np.savez(tmp_path / "fmt.npz", table=t, meta=np.array(json.dumps({"format": "other/9"})))
    with pytest.raises(LUTError, match="format"):
        load_lut(tmp_path / "fmt.npz")
    np.savez(tmp_path / "json.npz", table=t, meta=np.array("{not json"))
    with pytest.raises(LUTError):
        load_lut(tmp_path / "json.npz")
    meta = {"format": "axcnn-lut/1", "a_bits": 8, "w_bits": 4, "signed": False}
    np.savez(tmp_path / "bits.npz", table=t, meta=np.array(json.dumps(meta)))
    with pytest.raises(LUTError, match="a_bits"):
        load_lut(tmp_path / "bits.npz")


def test_missing_file_and_wrong_extension(tmp_path):
    with pytest.raises(LUTError, match="does not exist"):
        load_lut(tmp_path / "nope.npy")
    (tmp_path / "table.txt").write_text("1 2\n3 4\n")
    with pytest.raises(LUTError, match="extension"):
        load_lut(tmp_path / "table.txt")
    with pytest.raises(LUTError, match="extension"):
        save_lut(MultiplierLUT(exact_table(4, 4, False)), tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.txt"]


def test_unsupported_source_type():
    with pytest.raises(LUTError):
        load_lut(42)
    with pytest.raises(LUTError):
        load_lut([[0, 0], [0, 1]])


# --- consistency checks ------------------------------------------------------------------------

def test_bits_mismatch(tmp_path):
    save_lut(MultiplierLUT(exact_table(8, 8, False)), tmp_path / "e8.npy")
    with pytest.raises(LUTError, match="--bits"):
        load_lut(tmp_path / "e8.npy", bits=4)
    assert load_lut(tmp_path / "e8.npy", bits=8).a_bits == 8
    save_lut(MultiplierLUT(exact_table(8, 4, False)), tmp_path / "m.npz")
    with pytest.raises(LUTError):
        load_lut(tmp_path / "m.npz", bits=8)  # w_bits is 4


def test_signed_mismatch_with_npz_metadata(tmp_path):
    save_lut(MultiplierLUT(exact_table(8, 8, True), signed=True), tmp_path / "s.npz")
    with pytest.raises(LUTError, match="signed"):
        load_lut(tmp_path / "s.npz", signed=False)
    assert load_lut(tmp_path / "s.npz", signed=True).signed
    save_lut(MultiplierLUT(exact_table(8, 8, False)), tmp_path / "u.npz")
    with pytest.raises(LUTError):
        load_lut(tmp_path / "u.npz", signed=True)


def test_signed_npy_loaded_unsigned_fails_with_hint(tmp_path):
    np.save(tmp_path / "s.npy", exact_table(8, 8, True))
    with pytest.raises(LUTError, match="signed"):
        load_lut(tmp_path / "s.npy")
    assert load_lut(tmp_path / "s.npy", signed=True).is_exact()


def test_signed_mismatch_for_objects():
    lut = MultiplierLUT(exact_table(4, 4, False))
    assert load_lut(lut) is lut
    with pytest.raises(LUTError):
        load_lut(lut, signed=True)
    with pytest.raises(LUTError):
        load_lut(lut, bits=8)
    arr = load_lut(exact_table(4, 4, True), signed=True, name="arr")
    assert arr.signed and arr.name == "arr"


# --- builtin: names ---------------------------------------------------------------------------

def test_builtin_suffix_fixes_format():
    lut = load_lut("builtin:drum4@4s")
    assert (lut.a_bits, lut.w_bits, lut.signed) == (4, 4, True)
    assert lut.name == "drum4_4s"
    assert lut.provenance["spec"] == "builtin:drum4@4s"
    assert lut == builtin("drum4", bits=4, signed=True)
    assert load_lut("builtin:drum4@4s", bits=4, signed=True) == lut


def test_builtin_mixed_suffix():
    lut = load_lut("builtin:exact@8x4u")
    assert (lut.a_bits, lut.w_bits, lut.signed) == (8, 4, False)
    assert lut.is_exact()


def test_builtin_default_and_explicit_bits():
    assert load_lut("builtin:exact").bits_label == "8u"
    assert load_lut("builtin:mitchell", bits=5, signed=True).bits_label == "5s"


@pytest.mark.parametrize("source,kwargs", [
    ("builtin:drum4@4s", {"bits": 8}),
    ("builtin:drum4@4s", {"signed": False}),
    ("builtin:drum4@8u", {"signed": True}),
    ("builtin:drum4@9u", {}),
    ("builtin:drum4@1u", {}),
    ("builtin:drum4@4q", {}),
    ("builtin:drum4@", {}),
    ("builtin:drum4@s4", {}),
    ("builtin:nosuch", {}),
    ("builtin:", {}),
    ("builtin:drum9", {}),
    ("builtin:drum4", {"bits": 3}),
])
def test_builtin_errors(source, kwargs):
    with pytest.raises(LUTError):
        load_lut(source, **kwargs)


# --- atomic save --------------------------------------------------------------------------------

def test_save_overwrites_atomically_and_leaves_no_temp_files(tmp_path):
    a = MultiplierLUT(exact_table(8, 8, False), name="a")
    b = MultiplierLUT(approx_table(8, False, seed=9), name="b")
    for ext in (".npy", ".npz", ".bin"):
        save_lut(a, tmp_path / f"x{ext}")
        save_lut(b, tmp_path / f"x{ext}")
        assert load_lut(tmp_path / f"x{ext}") == b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.npy", "x.npz"]


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    good = MultiplierLUT(exact_table(8, 8, False))
    save_lut(good, tmp_path / "k.npz")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        save_lut(MultiplierLUT(approx_table(8, False)), tmp_path / "k.npz")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.npz"]
    assert load_lut(tmp_path / "k.npz") == good
    with zipfile.ZipFile(tmp_path / "k.npz") as z:
        assert z.testzip() is None


# --- FILE.npz:KEY (a member of a multi-table .npz) ----------------------------------------------

def test_npz_member(tmp_path):
    t_u = approx_table(8, False, seed=1)
    t_s = approx_table(4, True, seed=2)
    np.savez(tmp_path / "lib.npz", mul_u=t_u, mul_s=t_s)
    lut = load_lut(f"{tmp_path / 'lib.npz'}:mul_u")
    assert lut.name == "mul_u" and not lut.signed
    assert np.array_equal(lut.table, t_u)
    assert lut.provenance["key"] == "mul_u"
    s = load_lut(f"{tmp_path / 'lib.npz'}:mul_s", signed=True, bits=4)
    assert s.signed and np.array_equal(s.table, t_s)
    with pytest.raises(LUTError):      # a signed table read as unsigned
        load_lut(f"{tmp_path / 'lib.npz'}:mul_s")
    with pytest.raises(LUTError, match="mul_u"):  # the message lists what the file holds
        load_lut(f"{tmp_path / 'lib.npz'}:nosuch")
    with pytest.raises(LUTError):
        load_lut(f"{tmp_path / 'missing.npz'}:mul_u")


def test_evoapprox_members_load(evoapprox, shared_data):
    path = shared_data / "evoapprox8_luts.npz"
    for name, (table, info) in evoapprox.items():
        lut = load_lut(f"{path}:{name}", signed=info["signed"], bits=8)
        assert np.array_equal(lut.table, table) and lut.name == name
