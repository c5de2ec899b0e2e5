"""End to end: ``axcnn circuit generate | simulate | report | setup | tools``."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from axcnn.cli.main import main
from axcnn.lut import builtin, load_lut

pytestmark = pytest.mark.eda


def _missing(reason):
    if os.environ.get("AXCNN_REQUIRE_EDA", "").strip() not in ("", "0"):
        pytest.fail(f"AXCNN_REQUIRE_EDA is set but {reason}")
    pytest.skip(reason)


def _need(*tools):
    from axcnn.errors import ToolNotFound
    from axcnn.toolchain import find_tool

    for t in tools:
        try:
            find_tool(t)
        except ToolNotFound as exc:
            _missing(f"needs {t}: {exc}")


def _need_liberty():
    from axcnn.errors import ToolNotFound
    from axcnn.hw.liberty import default_liberty

    try:
        default_liberty()
    except ToolNotFound as exc:
        _missing(f"the default liberty is not installed ({exc})")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # default work dirs (runs/circuits/...) land here


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_simulate_and_read_back(capsys, tmp_path):
    _need("yosys")
    code, out, err = run(capsys, "circuit", "generate", "bam2_6", "--bits", "6", "--signed",
                         "-o", "bam.v")
    assert code == 0 and (tmp_path / "bam.v").is_file()
    code, out, err = run(capsys, "circuit", "simulate", "bam.v", "--out", "bam.npz",
                         "--cross-check", "300")
    assert code == 0, err
    assert "6x6 signed" in out and "iverilog: 300 pairs agree" in out
    lut = load_lut(tmp_path / "bam.npz")
    assert lut == builtin("bam2_6@6s")
    assert lut.provenance["source"] == "circuit"
    assert (tmp_path / "runs" / "circuits").is_dir()
    if importlib.util.find_spec("axcnn.cli.lut") is not None:   # the LUT CLI reads the file
        code, out, err = run(capsys, "lut", "metrics", "bam.npz")
        assert code == 0, err


def test_generate_to_stdout_and_grid_verify(capsys, tmp_path):
    _need("yosys")
    code, out, _ = run(capsys, "circuit", "generate", "mitchell@4u")
    assert code == 0 and "module mul_mitchell_4u" in out
    code, out, err = run(capsys, "circuit", "generate", "--grid", "--bits", "3", "--out-dir", "g",
                         "--verify", "--workdir", "vw")
    assert code == 0, err
    assert out.count("matches its functional table") == len(list((tmp_path / "g").glob("*.v")))
    code, _, err = run(capsys, "circuit", "generate", "exact", "trunc2", "-o", "x.v")
    assert code == 2 and "--out-dir" in err


def test_simulate_folder_json(capsys, tmp_path):
    _need("yosys")
    run(capsys, "circuit", "generate", "exact", "trunc4", "--bits", "4", "--out-dir", "f")
    code, out, err = run(capsys, "circuit", "simulate", "f", "--out", "luts", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["exact_4u", "trunc4_4u"]
    assert rows[0]["exact"] and not rows[1]["exact"]
    assert load_lut(tmp_path / "luts" / "trunc4_4u.npz") == builtin("trunc4@4u")


def test_report_json(capsys, tmp_path):
    _need("yosys", "sta")
    _need_liberty()
    run(capsys, "circuit", "generate", "drum3@6u", "-o", "d.v")
    code, out, err = run(capsys, "circuit", "report", "d.v", "--json", "--vectors", "5000",
                         "--workdir", "w")
    assert code == 0, err
    r = json.loads(out)                       # stdout is pure JSON
    assert r["a_bits"] == r["w_bits"] == 6 and r["signed"] is False
    assert r["area_um2"] > 0 and r["delay_ns"] > 0 and r["cells"]["total"] > 0
    wl, vl = r["power"]["workload"], r["power"]["vectorless"]
    assert wl["method"] == "toggle-count" and wl["units"] == "W" and wl["voltage_V"] == 1.8
    assert wl["clock_ns"] == 10.0 and wl["operands"] == {"source": "uniform", "vectors": 5000, "seed": 0}
    assert vl["method"] == "opensta-vectorless" and vl["total_W"] > 0
    assert r["mapped_equivalent"] and r["tools"]["yosys"] and r["tools"]["sta"]
    assert (tmp_path / "w" / "report.json").is_file()
    code, out, err = run(capsys, "circuit", "report", "d.v", "--workdir", "w2", "--vectors", "500")
    assert code == 0 and "area" in out and "vectorless OpenSTA" in out


def test_report_json_through_the_real_entry_point(cli, tmp_path):
    """In a separate process, stdout must hold only the JSON (logs go to stderr)."""
    _need("yosys", "sta")
    _need_liberty()
    cli("circuit", "generate", "trunc3@4s", "-o", "t.v", cwd=tmp_path, check=0)
    proc = cli("circuit", "report", "t.v", "--json", "--vectors", "1000", cwd=tmp_path, check=0)
    r = json.loads(proc.stdout)
    assert r["signed"] is True and r["lut"]["name"] == "t"
    proc = cli("circuit", "simulate", "t.v", "--out", "t.npy", cwd=tmp_path, check=0)
    assert np.array_equal(np.load(tmp_path / "t.npy"), builtin("trunc3@4s").table)


def test_report_folder_with_a_bad_file_and_histogram(capsys, tmp_path):
    _need("yosys", "sta")
    _need_liberty()
    run(capsys, "circuit", "generate", "exact", "trunc5", "--bits", "4", "--out-dir", "f")
    (tmp_path / "f" / "broken.v").write_text("module broken(input a; endmodule\n")
    layers = {"l1": np.ones((2, 16, 16)), "l2": np.eye(16)}
    np.savez(tmp_path / "ops.npz", __meta__=np.array("{}"), **layers)
    code, out, err = run(capsys, "circuit", "report", "f", "--operands", "ops.npz",
                         "--vectors", "2000", "--jobs", "2")
    assert code == 2                                      # the broken file's error code
    assert "exact_4u" in out and "trunc5_4u" in out and "ERROR" in out
    assert "broken.v" in err
    code, out, err = run(capsys, "circuit", "report", "f/exact_4u.v", "--json",
                         "--operands", "ops.npz", "--vectors", "2000")
    assert code == 0 and json.loads(out)["power"]["workload"]["operands"]["source"] == "ops.npz"


def test_bad_input_exit_codes(capsys, tmp_path):
    _need("yosys")
    (tmp_path / "bad.v").write_text("module bad(input [3:0] a, output y); assign y = a & ; endmodule\n")
    code, out, err = run(capsys, "circuit", "simulate", "bad.v", "--out", "b.npz")
    assert code == 2 and "syntax error" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "m.v").write_text("module m(input [3:0] a, input [3:0] b, output [7:0] y);\n"
                                  "assign y = a * b; endmodule\n")
    code, _, err = run(capsys, "circuit", "simulate", "m.v", "--out", "m.npz", "--bits", "8")
    assert code == 2 and "expected 8" in err
    code, _, err = run(capsys, "circuit", "simulate", "m.v", "--out", "m.txt")
    assert code == 2
    code, _, err = run(capsys, "circuit", "simulate", "nope.v", "--out", "m.npz")
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "circuit", "report", "m.v", "--operands", "nope.npz")
    assert code == 2


def test_missing_tools_exit_3(capsys, tmp_path, monkeypatch):
    (tmp_path / "m.v").write_text("module m(input [1:0] a, input [1:0] b, output [3:0] y);\n"
                                  "assign y = a * b; endmodule\n")
    monkeypatch.setenv("AXCNN_YOSYS", str(tmp_path / "missing-yosys"))
    code, _, err = run(capsys, "circuit", "simulate", "m.v", "--out", "m.npz")
    assert code == 3 and "sudo apt-get install -y yosys" in err
    monkeypatch.delenv("AXCNN_YOSYS")
    monkeypatch.setenv("AXCNN_STA", str(tmp_path / "missing-sta"))
    monkeypatch.setenv("AXCNN_LIBERTY", str(tmp_path / "m.v"))   # any file: checked later
    code, _, err = run(capsys, "circuit", "report", "m.v")
    assert code == 3 and "sudo apt-get install -y opensta" in err


def test_timeout_exit_1(capsys, tmp_path):
    _need("yosys")
    run(capsys, "circuit", "generate", "exact", "-o", "e.v")
    code, _, err = run(capsys, "circuit", "simulate", "e.v", "--out", "e.npz", "--timeout", "0.001")
    assert code == 1 and "did not finish within 0.001 s" in err


def test_setup_without_apt_and_tools(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AXCNN_APT_GET", str(tmp_path / "no-apt"))
    code, _, err = run(capsys, "circuit", "setup", "--cache", str(tmp_path / "c"), "--force")
    assert code == 3 and "apt-get download qflow-tech-osu018" in err
    monkeypatch.setenv("AXCNN_VVP", str(tmp_path / "no-vvp"))
    code, out, _ = run(capsys, "circuit", "tools", "--json")
    info = json.loads(out)
    assert code == 3
    assert {r["tool"]: r["found"] for r in info["tools"]}["vvp"] is False
