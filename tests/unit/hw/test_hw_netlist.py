"""axcnn.hw.netlist: the numpy bit-parallel simulator on hand-written yosys JSON netlists."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from axcnn.errors import exit_code
from axcnn.hw.netlist import (CircuitError, Netlist, pack_bits, popcount_rows, tail_mask,
                              unpack_bits)
from axcnn.hw.ports import detect_ports
from axcnn.hw.simulate import netlist_table
from axcnn.lut import exact_table


def _cell(ctype, **conns):
    return {"type": ctype, "connections": {k: [v] for k, v in conns.items()}}


def _module(ports, cells, name="m"):
    return {"modules": {name: {"attributes": {"top": "00000000000000000000000000000001"},
                               "ports": ports, "cells": cells, "netnames": {}}}}


def mul2x2_json(order=None):
    """Exact unsigned 2x2 multiplier: a=[2,3], b=[4,5], y=[10..13] (yosys net ids)."""
    cells = {
        "p00": _cell("$_AND_", A=2, B=4, Y=10),           # y0 = a0 b0
        "p10": _cell("$_AND_", A=3, B=4, Y=20),           # a1 b0
        "p01": _cell("$_AND_", A=2, B=5, Y=21),           # a0 b1
        "p11": _cell("$_AND_", A=3, B=5, Y=22),           # a1 b1
        "s1": _cell("$_XOR_", A=20, B=21, Y=11),          # y1
        "c1": _cell("$_AND_", A=20, B=21, Y=23),
        "s2": _cell("$_XOR_", A=22, B=23, Y=12),          # y2
        "c2": _cell("$_AND_", A=22, B=23, Y=13),          # y3
    }
    if order:
        cells = {k: cells[k] for k in order}
    ports = {"a": {"direction": "input", "bits": [2, 3]},
             "b": {"direction": "input", "bits": [4, 5]},
             "y": {"direction": "output", "bits": [10, 11, 12, 13]}}
    return _module(ports, cells)


def test_pack_unpack_popcount():
    rng = np.random.default_rng(0)
    for n in (1, 63, 64, 65, 1000):
        bits = rng.integers(0, 2, n)
        words = pack_bits(bits)
        assert words.dtype == np.uint64 and words.size == -(-n // 64)
        assert np.array_equal(unpack_bits(words, n), bits)
        assert popcount_rows(words[None, :])[0] == bits.sum()
    m = tail_mask(70, 2)
    assert popcount_rows(m[None, :])[0] == 70


def test_two_by_two_multiplier_any_cell_order():
    for order in (None, ["c2", "s2", "p11", "c1", "s1", "p01", "p10", "p00"]):
        nl = Netlist.from_json(mul2x2_json(order))
        assert [g.cell for g in nl.gates].index("p11") < [g.cell for g in nl.gates].index("c2")
        pm = detect_ports(nl.ports, module=nl.module)
        assert pm.convention == "plain"
        assert np.array_equal(netlist_table(nl, pm, False), exact_table(2, 2, False))
        assert nl.cell_counts() == {"$_AND_": 6, "$_XOR_": 2}
        assert nl.depth() == 3     # AND -> AND (carry) -> AND


@pytest.mark.parametrize("ctype, fn", [
    ("$_NOT_", lambda a, b, c, d: 1 - a), ("$_BUF_", lambda a, b, c, d: a),
    ("$_AND_", lambda a, b, c, d: a & b), ("$_NAND_", lambda a, b, c, d: 1 - (a & b)),
    ("$_OR_", lambda a, b, c, d: a | b), ("$_NOR_", lambda a, b, c, d: 1 - (a | b)),
    ("$_XOR_", lambda a, b, c, d: a ^ b), ("$_XNOR_", lambda a, b, c, d: 1 - (a ^ b)),
    ("$_ANDNOT_", lambda a, b, c, d: a & (1 - b)), ("$_ORNOT_", lambda a, b, c, d: a | (1 - b)),
    ("$_MUX_", lambda a, b, s, d: b if s else a), ("$_NMUX_", lambda a, b, s, d: 1 - (b if s else a)),
    ("$_AOI3_", lambda a, b, c, d: 1 - ((a & b) | c)), ("$_OAI3_", lambda a, b, c, d: 1 - ((a | b) & c)),
    ("$_AOI4_", lambda a, b, c, d: 1 - ((a & b) | (c & d))),
    ("$_OAI4_", lambda a, b, c, d: 1 - ((a | b) & (c | d))),
])
def test_every_simple_gate(ctype, fn):
    from axcnn.hw.netlist import YOSYS_GATES

    pins = YOSYS_GATES[ctype][0]
    conns = {p: 2 + i for i, p in enumerate(pins)}
    conns["Y"] = 9
    ports = {"x": {"direction": "input", "bits": [2, 3, 4, 5][: len(pins)]},
             "y": {"direction": "output", "bits": [9]}}
    nl = Netlist.from_json(_module(ports, {"g": _cell(ctype, **conns)}))
    combos = list(itertools.product((0, 1), repeat=len(pins)))
    words = {nl.bit("x", i): pack_bits([c[i] for c in combos]) for i in range(len(pins))}
    vals = nl.simulate(words, 1)
    got = unpack_bits(vals[nl.bit("y", 0)], len(combos))
    want = [fn(*(list(c) + [0] * (4 - len(c)))) for c in combos]
    assert got.tolist() == want


def test_constants_and_undriven_bits():
    ports = {"a": {"direction": "input", "bits": [2]},
             "y": {"direction": "output", "bits": [3, "1", "0", "x", 7]}}
    nl = Netlist.from_json(_module(ports, {"g": _cell("$_NOT_", A=2, Y=3)}))
    assert any("undefined" in w for w in nl.warnings)
    assert any("undriven" in w for w in nl.warnings)
    vals = nl.simulate({nl.bit("a", 0): pack_bits([0, 1])}, 1)
    y = [unpack_bits(vals[b], 2).tolist() for b in nl.ports["y"].bits]
    assert y == [[1, 0], [1, 1], [0, 0], [0, 0], [0, 0]]


def test_loops_double_drivers_and_sequential_cells():
    ports = {"a": {"direction": "input", "bits": [2]}, "y": {"direction": "output", "bits": [3]}}
    loop = {"g1": _cell("$_AND_", A=2, B=4, Y=3), "g2": _cell("$_NOT_", A=3, Y=4)}
    with pytest.raises(CircuitError, match="combinational loop") as ei:
        Netlist.from_json(_module(ports, loop))
    assert exit_code(ei.value) == 2
    double = {"g1": _cell("$_NOT_", A=2, Y=3), "g2": _cell("$_BUF_", A=2, Y=3)}
    with pytest.raises(CircuitError, match="driven by both"):
        Netlist.from_json(_module(ports, double))
    seq = {"ff": _cell("$_DFF_P_", C=2, D=2, Q=3)}
    with pytest.raises(CircuitError, match="sequential"):
        Netlist.from_json(_module(ports, seq))
    odd = {"m": {"type": "$mul", "connections": {"A": [2], "B": [2], "Y": [3]}}}
    with pytest.raises(CircuitError, match="techmapped|cannot be simulated"):
        Netlist.from_json(_module(ports, odd))


def test_unit_delay_counts_a_glitch():
    # y = a XOR (NOT NOT a): functionally 1 always, but a change of a glitches y
    ports = {"a": {"direction": "input", "bits": [2]}, "y": {"direction": "output", "bits": [5]}}
    cells = {"n1": _cell("$_NOT_", A=2, Y=3), "n2": _cell("$_NOT_", A=3, Y=4),
             "x": _cell("$_XNOR_", A=2, B=4, Y=5)}
    nl = Netlist.from_json(_module(ports, cells))
    a = nl.bit("a", 0)
    before = nl.simulate({a: pack_bits([0])}, 1)
    settled, rises, falls = nl.settle_unit_delay(before, {a: pack_bits([1])})
    y = nl.bit("y", 0)
    assert unpack_bits(settled[y], 1)[0] == 1
    assert falls[y] == 1 and rises[y] == 1      # 1 -> 0 -> 1 glitch
    assert rises[a] == 1 and falls[a] == 0
