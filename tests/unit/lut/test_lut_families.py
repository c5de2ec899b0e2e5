"""Built-in multiplier families: validity, exact special cases, hand-checked cells, parsing."""

from __future__ import annotations

import numpy as np
import pytest

from axcnn.errors import LUTError
from axcnn.lut import (MultiplierLUT, builtin, exact_table, family_grid, list_builtins,
                       lut_metrics, operand_values, parse_builtin)

BITS = range(2, 9)


def _base_names(bits: int, signed: bool) -> list[str]:
    """One or more members of every family that are valid at ``bits``."""
    names = set(family_grid(bits))
    names |= {"exact", "mitchell", "trunc0", "trunc1", f"trunc{2 * bits - 1}", "bam0_0",
              f"bam{bits - 1}_{2 * bits - 1}", f"drum{bits}"}
    if not signed or bits == 2:
        names.add("drum2")  # signed drum2 overflows, see test_signed_drum2_overflows
    return sorted(names)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", BITS)
def test_every_family_builds_a_valid_lut(bits, signed):
    families_seen = set()
    for name in _base_names(bits, signed):
        lut = builtin(name, bits=bits, signed=signed)
        assert isinstance(lut, MultiplierLUT)
        assert (lut.a_bits, lut.w_bits, lut.signed) == (bits, bits, signed)
        assert lut.table.shape == (1 << bits, 1 << bits)
        # re-validating the table from scratch must succeed (range, integrality)
        assert MultiplierLUT(np.array(lut.table), signed=signed) == lut
        families_seen.add(lut.provenance["family"])
        assert lut.provenance["source"] == "builtin"
    assert families_seen == {f.name for f in list_builtins()}


def test_family_grid_names_are_distinct():
    grid = family_grid(8)
    assert len(grid) == len(set(grid))
    assert "exact" in grid and "mitchell" in grid


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", BITS)
def test_exact_special_cases(bits, signed):
    for name in ("exact", "trunc0", "bam0_0", f"drum{bits}"):
        assert builtin(name, bits=bits, signed=signed).is_exact(), name


def test_drum_k_at_least_the_wider_operand_is_exact():
    assert builtin("drum8", bits=8, w_bits=4).is_exact()
    assert not builtin("drum4", bits=8, w_bits=4).is_exact()


@pytest.mark.parametrize("bits", BITS)
def test_mitchell_never_overestimates_and_is_exact_on_powers_of_two(bits):
    lut = builtin("mitchell", bits=bits)
    exact = lut.exact()
    assert np.all(lut.table <= exact)
    v = operand_values(bits, False)
    pow2 = (v > 0) & ((v & (v - 1)) == 0)
    assert np.array_equal(lut.table[pow2, :], exact[pow2, :])
    assert np.array_equal(lut.table[:, pow2], exact[:, pow2])
    assert np.all(lut.table[0, :] == 0) and np.all(lut.table[:, 0] == 0)
    if bits >= 2:
        assert not lut.is_exact()


def test_hand_checked_cells():
    # trunc2, 4-bit: 3*3 keeps only the partial product a1*w1*4
    assert builtin("trunc2", bits=4).lookup(3, 3) == 4
    # mitchell: 3*3 -> 8, 5*6 -> 28
    mit = builtin("mitchell", bits=4)
    assert mit.lookup(3, 3) == 8
    assert mit.lookup(5, 6) == 28
    # drum4: 100 -> 104 (0b1101 << 3), 37 -> 36 (0b1001 << 2)
    drum = builtin("drum4", bits=8)
    assert drum.lookup(100, 37) == 104 * 36
    assert drum.lookup(15, 15) == 225  # 4-bit operands are kept whole
    # bam1_0, 4-bit: drop the w_0 row: 7*7 -> 7*6
    assert builtin("bam1_0", bits=4).lookup(7, 7) == 42
    # bam0_3, 4-bit: drop columns i+j < 3: 7*7 = 49 minus (1 + 2*2 + 3*4) = 32
    assert builtin("bam0_3", bits=4).lookup(7, 7) == 32


@pytest.mark.parametrize("family", ["drum4", "mitchell", "trunc5", "bam2_6"])
def test_signed_is_sign_magnitude_of_unsigned_core(family):
    u = builtin(family, bits=8, signed=False)
    s = builtin(family, bits=8, signed=True)
    for a, w in [(-100, 37), (100, -37), (-100, -37), (100, 37), (-1, 1), (0, -5), (-77, -128), (127, 126)]:
        core = u.lookup(abs(a), abs(w))
        sign = int(np.sign(a) * np.sign(w))
        assert s.lookup(a, w) == sign * core, (a, w)
    # -128 * -128: the magnitude 128 still fits the 8-bit unsigned core
    assert s.lookup(-128, -128) == u.lookup(128, 128)
    assert s.lookup(-128, 127) == -u.lookup(128, 127)


@pytest.mark.parametrize("bits", range(3, 9))
def test_signed_drum2_overflows(bits):
    """DRUM-2 rounds the magnitude 2^(b-1) of -2^(b-1) up to 1.5 * 2^(b-1); the square no
    longer fits a 2b-bit signed output, so the table is refused (not silently wrapped)."""
    with pytest.raises(LUTError, match="overflows"):
        builtin("drum2", bits=bits, signed=True)
    assert builtin("drum3", bits=bits, signed=True).lookup(-(1 << (bits - 1)), 1) < 0


def test_signed_drum_by_hand():
    assert builtin("drum4", bits=8, signed=True).lookup(-100, 37) == -3744


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_trunc_error_decreases_with_k(bits):
    maes = [lut_metrics(builtin(f"trunc{k}", bits=bits))["mae"] for k in range(0, bits + 2)]
    assert maes[0] == 0
    assert all(a < b for a, b in zip(maes, maes[1:])), maes


@pytest.mark.parametrize("name", ["trunc6", "bam2_6", "bam3_0"])
def test_dropping_partial_products_never_overestimates(name):
    lut = builtin(name, bits=8)
    assert np.all(lut.table <= lut.exact())
    assert not lut.is_exact()


def test_builtin_widths_and_names():
    lut = builtin("builtin:bam2_6", bits=6, signed=True)
    assert lut.name == "bam2_6_6s"
    spec = parse_builtin("drum5@8x4s")
    assert (spec.family, spec.params, spec.a_bits, spec.w_bits, spec.signed) == ("drum", {"k": 5}, 8, 4, True)
    assert spec.spec == "builtin:drum5@8x4s"
    assert spec.name == "drum5_8x4s"
    assert parse_builtin("exact").spec == "builtin:exact@8u"
    assert builtin("exact", bits=3, w_bits=5).table.shape == (8, 32)


def test_builtin_tables_are_exact_products_of_reduced_operands():
    """drumK's table is the product of the two rounded operands (an independent check)."""
    lut = builtin("drum3", bits=6)
    v = operand_values(6, False)

    def drum_operand(x, k=3):
        if x < (1 << k):
            return x
        lead = x.bit_length() - 1
        t = lead + 1 - k
        return (((x >> t) | 1) << t)

    red = np.array([drum_operand(int(x)) for x in v])
    assert np.array_equal(lut.table, np.outer(red, red))


@pytest.mark.parametrize("name,kwargs", [
    ("nosuch", {}),
    ("trunc", {}),
    ("truncx", {}),
    ("trunc16", {"bits": 8}),        # k must be < 2*bits
    ("trunc8", {"bits": 4}),
    ("bam8_0", {"bits": 8}),         # h must be < w_bits
    ("bam0_16", {"bits": 8}),
    ("bam2", {}),
    ("drum1", {}),
    ("drum9", {"bits": 8}),
    ("drum5", {"bits": 4}),
    ("exact", {"bits": 9}),
    ("exact", {"bits": 1}),
    ("exact", {"bits": 8, "w_bits": 9}),
    ("mitchell2", {}),
    ("drum4@4s", {"bits": 8}),
    ("drum4@4s", {"signed": False}),
    ("drum4@4x", {}),
])
def test_parse_errors(name, kwargs):
    with pytest.raises(LUTError):
        builtin(name, **kwargs)


def test_unknown_family_message_lists_families():
    with pytest.raises(LUTError, match="drum") as info:
        parse_builtin("booth4")
    assert "mitchell" in str(info.value)


def test_builtin_matches_exact_table():
    for bits in (2, 5, 8):
        for signed in (False, True):
            assert np.array_equal(builtin("exact", bits=bits, signed=signed).table,
                                  exact_table(bits, bits, signed))
