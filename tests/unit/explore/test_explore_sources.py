"""Candidate sources: built-in families, folders, EvoApproxLib (gcc), the SubXPAT adapter."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from axcnn.errors import ConfigError, ToolNotFound
from axcnn.explore.candidates import SourceContext, make_sources, normalized_verilog, verilog_hash
from axcnn.explore.evoapprox import c_model_table, header_params, parse_c_function
from axcnn.explore.spec import spec_from_dict
from axcnn.explore.subxpat import benchmark_bits, expand_runs, processes_in
from axcnn.lut import builtin, save_lut

DOUBLE = Path(__file__).resolve().parents[2] / "fixtures" / "subxpat_double"



def _spec(tmp_path, sources, **kw):
    return spec_from_dict({"name": "t", "sources": sources, **kw}, base_dir=tmp_path)


def _cands(spec, folder):
    out = []
    for src in make_sources(spec):
        src.check()
        out += list(src.candidates(SourceContext(folder, spec)))
    return out


def test_verilog_hash_ignores_comments_and_layout(tmp_path):
    a, b = tmp_path / "a.v", tmp_path / "b.v"
    a.write_text("// made at 12:00\nmodule m(x, y);\n  assign y = x; /* c */\nendmodule\n")
    b.write_text("module m(x, y);   assign y = x;\n\nendmodule // other\n")
    assert normalized_verilog(a.read_text()) == normalized_verilog(b.read_text())
    assert verilog_hash(a) == verilog_hash(b)
    b.write_text("module m(x, y); assign y = ~x; endmodule")
    assert verilog_hash(a) != verilog_hash(b)


def test_builtin_source_luts_or_circuits(tmp_path):
    lut_spec = _spec(tmp_path, [{"type": "builtin", "families": ["trunc", "drum"]}], bits=4,
                     hardware=False)
    c = _cands(lut_spec, tmp_path)
    assert [x.name for x in c] == ["trunc2_4u", "trunc3_4u", "trunc4_4u", "trunc5_4u", "drum3_4u"]
    assert all(x.kind == "lut" and x.content_hash == builtin(x.lut).sha256 for x in c)
    hw_spec = _spec(tmp_path, [{"type": "builtin", "names": ["exact", "mitchell"]}], bits=4)
    c = _cands(hw_spec, tmp_path)
    assert [x.kind for x in c] == ["circuit", "circuit"]
    assert Path(c[0].verilog).read_text().startswith("// builtin:exact@4u")
    assert c[0].key != c[1].key
    with pytest.raises(Exception, match="unknown"):
        _cands(_spec(tmp_path, [{"type": "builtin", "names": ["nonsense"]}]), tmp_path)


def test_folder_source(tmp_path):
    d = tmp_path / "luts"
    d.mkdir()
    save_lut(builtin("trunc3@4u"), d / "t3.npy")
    save_lut(builtin("drum3@4u"), d / "d3.npz")
    (d / "bad.npy").write_bytes(b"not an array")
    (d / "plain.v").write_text("module m(a, b, y); input [3:0] a, b; output [7:0] y; "
                               "assign y = a * b; endmodule\n")
    (d / "notes.txt").write_text("ignored")
    c = _cands(_spec(tmp_path, [{"type": "folder", "path": "luts"}], bits=4), tmp_path)
    assert sorted((x.name, x.kind) for x in c) == [("d3", "lut"), ("plain", "circuit"), ("t3", "lut")]
    with pytest.raises(ConfigError, match="does not exist"):
        _cands(_spec(tmp_path, [{"type": "folder", "path": "nowhere"}]), tmp_path)


FAKE_C = """/***
* a fake EvoApproxLib-style model for tests
***/
// MAE = 1.5
// PDK45_PWR = 0.012 mW
// PDK45_AREA = 50.5 um2
#include <stdint.h>
#include <stdlib.h>

uint64_t mul4u_TST(const uint64_t B /* weight */,const uint64_t A)
{
   uint64_t O;
   O = (A * B) & ~((uint64_t)3);   /* drop the two low product bits */
   return O;
}
"""
FAKE_V = """// MAE = 1.5
module mul4u_TST ( A, B, O );
  input [3:0] A;
  input [3:0] B;
  output [7:0] O;
  wire [7:0] p = A * B;
  assign O = {p[7:2], 2'b00};
endmodule
"""


def _have_gcc():
    try:
        from axcnn.explore.tools import find_gcc

        find_gcc()
    except ToolNotFound as exc:
        pytest.skip(f"needs gcc: {exc}")


def test_c_model_parsing_and_table(tmp_path):
    assert parse_c_function(FAKE_C)[1:] == ("mul4u_TST", ["B", "A"])
    assert header_params(FAKE_C)["pdk45_area"] == 50.5
    _have_gcc()
    c = tmp_path / "mul4u_TST.c"
    c.write_text(FAKE_C)
    t = c_model_table(c, 4, 4, False, tmp_path / "work")
    a, b = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    assert np.array_equal(t, (a * b) & ~3)
    assert (tmp_path / "work" / "commands.sh").is_file()        # went through the toolchain
    signed = tmp_path / "mul4s_SGN.c"
    signed.write_text("#include <stdint.h>\nint16_t mul4s_SGN(int8_t A, int8_t B)\n"
                      "{ return (int16_t)(A * B - (A < 0 ? 1 : 0)); }\n")
    ts = c_model_table(signed, 4, 4, True, tmp_path / "work2")
    av, bv = np.meshgrid(np.arange(-8, 8), np.arange(-8, 8), indexing="ij")
    assert np.array_equal(ts, av * bv - (av < 0))
    # signed models declared on bit patterns (uint8_t in, uint16_t out), as some of the library's
    patterns = tmp_path / "mul4s_PAT.c"
    patterns.write_text("#include <stdint.h>\nuint16_t mul4s_PAT(uint8_t A, uint8_t B)\n"
                        "{ int a = (A & 8) ? (int)(A & 15) - 16 : (A & 15);\n"
                        "  int b = (B & 8) ? (int)(B & 15) - 16 : (B & 15);\n"
                        "  return (uint16_t)((a * b) & 0xFF); }\n")
    assert np.array_equal(c_model_table(patterns, 4, 4, True, tmp_path / "work3"), av * bv)


def test_evoapprox_source_layout(tmp_path):
    _have_gcc()
    lib = tmp_path / "evo" / "multiplers"
    for sub in ("pareto_pwr_mae", "pareto_pwr_wce"):       # the same circuit in two subsets
        d = lib / "4x4_unsigned" / sub
        d.mkdir(parents=True)
        (d / "mul4u_TST.c").write_text(FAKE_C)
        (d / "mul4u_TST.v").write_text(FAKE_V)
        (d / "mul4u_TST_pdk45.v").write_text("// mapped, ignored")
    (lib / "8x8_unsigned").mkdir(parents=True)
    spec = _spec(tmp_path, [{"type": "evoapprox", "path": "evo"}], bits=4)
    c = _cands(spec, tmp_path)
    assert len(c) == 1 and c[0].name == "mul4u_TST" and c[0].ports == "evoapprox"
    assert c[0].c_model.endswith(".c") and c[0].verilog.endswith("mul4u_TST.v")
    assert c[0].info["pdk45_pwr"] == 0.012
    with pytest.raises(ConfigError, match="no 8x8"):
        _cands(_spec(tmp_path, [{"type": "evoapprox", "path": "evo"}], bits=8), tmp_path)


def test_subxpat_helpers():
    assert expand_runs(["--subxpat"], None) == [["--subxpat"]]
    runs = expand_runs(["--subxpat"], {"max_error": [2, 4], "min_labeling": [True], "x": [None]})
    assert runs == [["--subxpat", "--max-error", "2", "--min-labeling"],
                    ["--subxpat", "--max-error", "4", "--min-labeling"]]
    assert benchmark_bits("mul_i16_o16") == 8 and benchmark_bits("mul_i4_o4") == 2
    assert benchmark_bits("adder") is None


def _read_state(folder):
    return [json.loads(p.read_text()) for p in sorted(folder.glob("sources/subxpat/*/state.json"))]


def test_subxpat_double_harvests_every_circuit_and_is_not_rerun(tmp_path, double_source):
    spec = _spec(tmp_path, [double_source()], bits=4, cnn=False, hardware=False)
    c = _cands(spec, tmp_path)
    # E = 4: ET 1..4, four accepted circuits, the last one included although it never
    # reaches output/ver
    assert len(c) == 4
    work = next(tmp_path.glob("sources/subxpat/*/work"))
    out_ver = {p.name for p in (work / "output" / "ver").glob("*.v")}
    assert f"{c[-1].name}.v" not in out_ver and f"{c[0].name}.v" in out_ver
    assert all(x.ports == "subxpat" and Path(x.verilog).is_file() for x in c)
    assert [x.info["et"] for x in c] == [1.0, 2.0, 3.0, 4.0]
    assert len({x.key for x in c}) == 4          # different netlists, some equal functions
    [state] = _read_state(tmp_path)
    assert state["status"] == "done" and len(state["circuits"]) == 4
    mtime = (work / "subxpat.log").stat().st_mtime_ns
    again = _cands(spec, tmp_path)               # finished run: harvested files, no rerun
    assert [x.key for x in again] == [x.key for x in c]
    assert (work / "subxpat.log").stat().st_mtime_ns == mtime
    log = (work / "subxpat.log").read_text()
    assert "main.py mul_i8_o8 --subxpat -e 4" in log.replace("'", "")


def test_subxpat_wall_budget_keeps_what_was_accepted(tmp_path, double_source, monkeypatch):
    monkeypatch.setenv("SUBXPAT_DOUBLE_HANG", "1")
    spec = _spec(tmp_path, [double_source(args=["--subxpat", "-e", "2"], wall_budget_s=4)],
                 bits=4, cnn=False, hardware=False)
    t0 = time.time()
    c = _cands(spec, tmp_path)
    assert time.time() - t0 < 30
    assert len(c) == 2
    [state] = _read_state(tmp_path)
    assert state["status"] == "budget"
    work = next(tmp_path.glob("sources/subxpat/*/work"))
    assert processes_in(work) == []              # the whole process group was ended


def test_subxpat_failure_and_missing_checkout(tmp_path, double_source, monkeypatch):
    monkeypatch.setenv("SUBXPAT_DOUBLE_FAIL", "1")
    spec = _spec(tmp_path, [double_source()], bits=4, cnn=False, hardware=False, max_attempts=1)
    c = _cands(spec, tmp_path)
    assert len(c) == 1                           # what it accepted before crashing is kept
    [state] = _read_state(tmp_path)
    assert state["status"] == "failed" and "exit status 1" in state["error"]
    monkeypatch.delenv("SUBXPAT_DIR", raising=False)
    with pytest.raises(ToolNotFound, match="SUBXPAT_DIR"):
        _cands(_spec(tmp_path, [{"type": "subxpat", "benchmark": "mul_i8_o8"}]), tmp_path)
    with pytest.raises(ToolNotFound, match="not a SubXPAT checkout"):
        _cands(_spec(tmp_path, [{"type": "subxpat", "benchmark": "x", "dir": str(tmp_path)}]),
               tmp_path)
    with pytest.raises(ConfigError, match="not in"):
        _cands(_spec(tmp_path, [double_source(benchmark="mul_i99_o99")]), tmp_path)
    with pytest.raises(ToolNotFound, match="subxpat-python"):
        _cands(_spec(tmp_path, [double_source(python=str(tmp_path / "no-python"))]), tmp_path)


def test_subxpat_needs_its_environment_on_path(tmp_path, double_source):
    """Like the real tool, the double finds no circuit when ``python3`` on PATH is not its
    environment's; the adapter puts the interpreter's folder first on PATH, so it works."""
    import subprocess

    work = tmp_path / "plain"
    shutil.copytree(DOUBLE, work, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(work / "input" / "ver.bak", work / "input" / "ver")
    env = {**os.environ, "PATH": "/nonexistent"}
    subprocess.run([sys.executable, "main.py", "mul_i8_o8", "-e", "2"], cwd=work, env=env,
                   check=True, capture_output=True, timeout=60)
    assert not [p for p in (work / "input" / "ver").glob("mul_i8_o8_*.v")]
    spec = _spec(tmp_path, [double_source(args=["--subxpat", "-e", "2"])], bits=4, cnn=False,
                 hardware=False)
    assert len(_cands(spec, tmp_path / "ex")) == 2
