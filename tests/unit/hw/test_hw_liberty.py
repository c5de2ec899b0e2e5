"""axcnn.hw.liberty: Liberty syntax, boolean functions, tables, the default library."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from axcnn.errors import ToolNotFound, exit_code
from axcnn.hw import liberty as L


def test_tiny_library_model(tiny_lib):
    lib = L.read_liberty(tiny_lib)
    assert lib.name == "tiny"
    assert lib.time_si == pytest.approx(1e-9)
    assert lib.cap_si == pytest.approx(1e-12)
    assert lib.leakage_si == pytest.approx(1e-9)
    assert lib.voltage_V == 1.0
    assert lib.energy_si == pytest.approx(1e-12)
    assert set(lib.cells) == {"INV", "BUF", "NAND2", "NOR2"}
    nand = lib.cell("NAND2")
    assert nand.area == 2 and nand.leakage == 2.0
    assert nand.leakage_states == [("A B", 4.0)]
    assert nand.inputs == ["A", "B"] and nand.outputs == ["Y"]
    assert nand.pins["A"].capacitance == pytest.approx(0.01)
    assert nand.pins["Y"].function == "!(A & B)"
    assert len(nand.pins["Y"].timing) == 2
    nor = lib.cell("NOR2")
    assert nor.area == 2          # attribute without ';' still parsed
    assert [a.related_pin for a in nor.pins["Y"].timing] == ["A", "B"]   # "A B" split
    ip = nor.pins["Y"].internal_power[0]
    assert ip.related_pin == "A B"
    assert ip.rise is not None and ip.fall is not None          # one 'power' table for both


def test_table_interpolation_and_extrapolation(tiny_lib):
    lib = L.read_liberty(tiny_lib)
    t = lib.cell("INV").pins["Y"].timing[0].rise_transition
    # variables: input_net_transition (slew) x total_output_net_capacitance (load)
    assert t.lookup(slew=0.0, load=0.0) == pytest.approx(0.01)
    assert t.lookup(slew=1.0, load=1.0) == pytest.approx(2.11)
    assert t.lookup(slew=0.5, load=0.5) == pytest.approx((0.01 + 2.01 + 0.11 + 2.11) / 4)
    assert t.lookup(slew=0.0, load=2.0) == pytest.approx(4.01)   # linear extrapolation
    e = lib.cell("INV").pins["Y"].internal_power[0].rise
    assert e.lookup(slew=1.0, load=0.0) == pytest.approx(0.003)


def test_missing_library_or_bad_syntax(tmp_path):
    with pytest.raises(L.LibertyError):
        L.read_liberty(tmp_path / "nope.lib")
    bad = tmp_path / "bad.lib"
    bad.write_text("library (x) { cell (A) { area : 1; ")
    with pytest.raises(L.LibertyError) as ei:
        L.read_liberty(bad)
    assert exit_code(ei.value) == 2


@pytest.mark.parametrize("expr, ref", [
    ("A", lambda A, B, C: A),
    ("!A", lambda A, B, C: 1 - A),
    ("A'", lambda A, B, C: 1 - A),
    ("(A B)", lambda A, B, C: A & B),
    ("A*B+C", lambda A, B, C: (A & B) | C),
    ("A&B|C", lambda A, B, C: (A & B) | C),
    ("A+B C", lambda A, B, C: A | (B & C)),
    ("A^B C", lambda A, B, C: (A ^ B) & C),          # XOR binds tighter than AND
    ("(!((A B)+C))", lambda A, B, C: 1 - ((A & B) | C)),
    ("(!((C A) + (!C B)))", lambda A, B, C: 1 - ((C & A) | ((1 - C) & B))),
    ("(A+B)'", lambda A, B, C: 1 - (A | B)),
    ("!A'", lambda A, B, C: A),
    ("A 1", lambda A, B, C: A),
    ("0", lambda A, B, C: 0),
    ("((A^B)^C)", lambda A, B, C: A ^ B ^ C),
])
def test_functions_truth_tables(expr, ref):
    for A, B, C in itertools.product((0, 1), repeat=3):
        vals = {"A": A, "B": B, "C": C}
        assert L.eval_function_bool(expr, vals) == ref(A, B, C), (expr, vals)


def test_function_bit_parallel_and_errors():
    fn, order = L.compile_function("!(A & B)", ("A", "B"))
    a = np.array([0b1100], dtype=np.uint64)
    b = np.array([0b1010], dtype=np.uint64)
    assert int(fn(a, b)[0] & np.uint64(0xF)) == 0b0111
    for bad in ("A &", "(A B", "A $ B", ""):
        with pytest.raises(L.LibertyError):
            L.parse_function(bad)
    with pytest.raises(L.LibertyError):
        L.compile_function("A & Z", ("A", "B"))


def test_unit_parsing():
    assert L._unit_scale("1ns", "s", 0) == pytest.approx(1e-9)
    assert L._unit_scale("1ps", "s", 0) == pytest.approx(1e-12)
    assert L._unit_scale("10ps", "s", 0) == pytest.approx(1e-11)
    assert L._unit_scale("1nW", "W", 0) == pytest.approx(1e-9)
    assert L._unit_scale("1pW", "W", 0) == pytest.approx(1e-12)
    assert L._unit_scale("1mV", "V", 0) == pytest.approx(1e-3)


def test_default_liberty_missing_names_setup(monkeypatch, tmp_path):
    monkeypatch.delenv("AXCNN_LIBERTY", raising=False)
    monkeypatch.setenv("AXCNN_CACHE", str(tmp_path))
    monkeypatch.setattr(L, "SYSTEM_LOCATIONS", ())
    with pytest.raises(ToolNotFound) as ei:
        L.default_liberty()
    assert "axcnn circuit setup" in str(ei.value) and "apt-get download qflow-tech-osu018" in str(ei.value)
    monkeypatch.setenv("AXCNN_LIBERTY", str(tmp_path / "none.lib"))
    with pytest.raises(ToolNotFound):
        L.default_liberty()


def test_default_liberty_env_and_resolve(monkeypatch, tiny_lib):
    monkeypatch.setenv("AXCNN_LIBERTY", str(tiny_lib))
    assert L.default_liberty() == tiny_lib
    assert L.resolve_liberty(None) == tiny_lib
    assert L.resolve_liberty(str(tiny_lib)) == tiny_lib
    with pytest.raises(Exception) as ei:
        L.resolve_liberty("/nonexistent/x.lib")
    assert exit_code(ei.value) == 2


def test_install_without_apt_gives_manual_command(monkeypatch, tmp_path):
    monkeypatch.setenv("AXCNN_APT_GET", "/nonexistent/apt-get")
    with pytest.raises(ToolNotFound) as ei:
        L.install_default_liberty(tmp_path)
    assert "apt-get download qflow-tech-osu018" in str(ei.value)
    assert exit_code(ei.value) == 3


def test_osu018_cells(osu018):
    lib = L.read_liberty(osu018)
    assert lib.voltage_V == pytest.approx(1.8)
    assert lib.cell("NAND2X1").pins["Y"].function == "(!(A B))"
    assert lib.cell("DFFPOSX1").sequential
    assert not lib.cell("AOI22X1").sequential
    assert lib.cell("FAX1").outputs == ["YC", "YS"]
    for name, cell in lib.cells.items():
        if cell.sequential:
            continue
        for out in cell.outputs:
            f = cell.pins[out].function
            if f:
                L.compile_function(f, tuple(cell.inputs))   # every function compiles
