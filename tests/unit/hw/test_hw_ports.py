"""axcnn.hw.ports: port conventions and explicit mappings."""

from __future__ import annotations

import pytest

from axcnn.errors import exit_code
from axcnn.hw.ports import PortError, PortInfo, detect_ports, parse_bit_list


def P(name, direction, width=1, signed=False, offset=0, upto=False):
    return PortInfo(name, direction, tuple(range(100, 100 + width)), signed, offset, upto)


def ports(*items):
    return {p.name: p for p in items}


def subxpat(n_in=16, n_out=16, out="out"):
    return ports(*[P(f"in{i}", "input") for i in range(n_in)],
                 *[P(f"{out}{i}", "output") for i in range(n_out)])


def test_subxpat_convention():
    pm = detect_ports(subxpat(), module="graph")
    assert pm.convention == "subxpat"
    assert pm.a == tuple((f"in{i}", 0) for i in range(8))          # in0 = LSB of A
    assert pm.b == tuple((f"in{i}", 0) for i in range(8, 16))
    assert pm.y == tuple((f"out{i}", 0) for i in range(16))
    assert pm.signed_hint is None
    raw = detect_ports(subxpat(8, 8, out="a_out"))                 # SubXPAT's input/ver files
    assert raw.a_bits == raw.w_bits == 4


def test_subxpat_uneven_split_needs_bits():
    ps = subxpat(12, 12)
    pm = detect_ports(ps, a_bits=8)
    assert (pm.a_bits, pm.w_bits) == (8, 4)
    with pytest.raises(PortError, match="--bits"):
        detect_ports(subxpat(7, 7))


def test_evoapprox_and_plain():
    evo = ports(P("A", "input", 8), P("B", "input", 8), P("O", "output", 16))
    pm = detect_ports(evo, module="mul8u_1JFF")
    assert pm.convention == "evoapprox" and pm.signed_hint is False
    assert pm.a == tuple(("A", i) for i in range(8))
    pm_s = detect_ports(evo, module="mul8s_1KV6")
    assert pm_s.signed_hint is True
    plain = ports(P("y", "output", 8), P("b", "input", 4), P("a", "input", 4))
    pm = detect_ports(plain)
    assert pm.convention == "plain" and pm.a[0] == ("a", 0) and pm.b[0] == ("b", 0)
    signed = ports(P("a", "input", 4, True), P("b", "input", 4, True), P("y", "output", 8, True))
    assert detect_ports(signed).signed_hint is True


def test_positional_with_note():
    pm = detect_ports(ports(P("act", "input", 4), P("wgt", "input", 4), P("prod", "output", 8)))
    assert pm.convention == "positional"
    assert pm.a[0] == ("act", 0) and pm.b[0] == ("wgt", 0)
    assert "first input 'act'" in pm.notes[0]


def test_widths_checked():
    bad = ports(P("a", "input", 4), P("b", "input", 4), P("y", "output", 7))
    with pytest.raises(PortError, match="not a 4x4-bit multiplier") as ei:
        detect_ports(bad)
    assert exit_code(ei.value) == 2
    with pytest.raises(PortError, match="expected 8"):
        detect_ports(ports(P("a", "input", 4), P("b", "input", 4), P("y", "output", 8)), a_bits=8)
    too_wide = ports(P("a", "input", 9), P("b", "input", 9), P("y", "output", 18))
    with pytest.raises(PortError, match="1..8"):
        detect_ports(too_wide)
    with pytest.raises(PortError, match="cannot tell"):
        detect_ports(ports(P("a", "input", 4), P("b", "input", 4), P("c", "input", 1),
                           P("y", "output", 8)))
    with pytest.raises(PortError, match="does not follow"):
        detect_ports(ports(P("a", "input", 4), P("b", "input", 4), P("y", "output", 8)),
                     convention="evoapprox")


def test_explicit_mapping_syntax():
    ps = ports(P("x", "input", 8, offset=0), P("w", "input", 4, offset=4), P("s", "input"),
               *[P(f"q{i}", "output") for i in range(13)])
    assert parse_bit_list("x", ps) == tuple(("x", i) for i in range(8))
    assert parse_bit_list("x[3:0]", ps) == tuple(("x", i) for i in range(4))
    assert parse_bit_list("w[7:4]", ps) == tuple(("w", i) for i in range(4))   # declared [7:4]
    assert parse_bit_list("x[2], x[0]", ps) == (("x", 2), ("x", 0))
    assert parse_bit_list("q3..q0", ps) == tuple((f"q{i}", 0) for i in (3, 2, 1, 0))
    pm = detect_ports(ps, explicit={"a": "x", "b": "w,s", "y": "q0..q12"})
    assert pm.convention == "explicit" and (pm.a_bits, pm.w_bits, pm.out_bits) == (8, 5, 13)
    with pytest.raises(PortError, match="does not exist"):
        parse_bit_list("nope", ps)
    with pytest.raises(PortError, match="outside"):
        parse_bit_list("w[2]", ps)
    with pytest.raises(PortError, match="missing"):
        detect_ports(ps, explicit={"a": "x", "b": "w"})
    with pytest.raises(PortError, match="mapped twice"):
        detect_ports(ps, explicit={"a": "x", "b": "x[3:0],s", "y": "q0..q12"})
    with pytest.raises(PortError, match="not outputs"):
        detect_ports(ps, explicit={"a": "x", "b": "w,s", "y": "s"})


def test_zero_padded_ranges_for_als_style_ports():
    ps = ports(*[P(f"pi{i:02d}", "input") for i in range(8)], *[P(f"po{i:02d}", "output") for i in range(8)])
    pm = detect_ports(ps, explicit={"a": "pi00..pi03", "b": "pi04..pi07", "y": "po00..po07"})
    assert pm.a[0] == ("pi00", 0) and pm.b[-1] == ("pi07", 0) and pm.out_bits == 8


def test_upto_ports_positions():
    p = P("v", "input", 4, upto=True)            # declared [0:3]: v[3] is the LSB
    assert p.position(3) == 0 and p.position(0) == 3
