"""Netlist -> LUT with yosys: port conventions, iverilog cross-checks, bad input, timeouts."""

from __future__ import annotations

import numpy as np
import pytest

from axcnn.errors import ToolNotFound, exit_code
from axcnn.lut import builtin, exact_table

pytestmark = pytest.mark.eda

# SubXPAT's cleaned format (yosys write_verilog of a NAND/NOT netlist, scalar in*/out* ports):
# an exact 2x2 multiplier, A = in1 in0, B = in3 in2 (in0 = LSB of A).
SUBXPAT_2X2 = """\
module graph(in0, in1, in2, in3, out0, out1, out2, out3);
  wire _00_;
  wire _01_;
  wire _02_;
  wire _03_;
  wire _04_;
  wire _05_;
  wire _06_;
  input in0;
  input in1;
  input in2;
  input in3;
  output out0;
  output out1;
  output out2;
  output out3;
  assign _00_ = ~(in0 & in2);
  assign out0 = ~_00_;
  assign _01_ = ~(in1 & in2);
  assign _02_ = ~(in0 & in3);
  assign _03_ = ~(_01_ & _02_);
  assign _04_ = ~(_01_ | _02_);
  assign out1 = _03_ & ~_04_;
  assign _05_ = ~(in1 & in3);
  assign _06_ = ~_05_;
  assign out2 = _06_ ^ _04_;
  assign out3 = _06_ & _04_;
endmodule
"""

EVO_8U = """\
// EvoApproxLib-style ports
module mul8u_TEST(A, B, O);
  input [7:0] A;
  input [7:0] B;
  output [15:0] O;
  assign O = A * B;
endmodule
"""

EVO_8S = """\
module mul8s_TEST(A, B, O);
  input [7:0] A;
  input [7:0] B;
  output [15:0] O;
  assign O = $signed(A) * $signed(B);
endmodule
"""

# an asymmetric multiplier whose operands are declared weight-first: only an explicit
# mapping (or the right positional order) gets the LUT orientation right
SWAPPED = """\
module swapped(w, x, p);
  input [3:0] w;   // weight
  input [5:0] x;   // activation
  output [9:0] p;
  assign p = x * {w[3:1], 1'b0};   // drop the weight's LSB: not symmetric
endmodule
"""


def _lut(tmp_path, text, name="c.v", **kw):
    from axcnn.hw.simulate import verilog_to_lut

    v = tmp_path / name
    v.write_text(text)
    return verilog_to_lut(v, workdir=tmp_path / (name + ".work"), **kw)


def test_subxpat_netlist(yosys, tmp_path):
    res = _lut(tmp_path, SUBXPAT_2X2)
    assert res.portmap.convention == "subxpat"
    assert np.array_equal(res.lut.table, exact_table(2, 2, False))
    # the seed's convention: row = A = in0.. (activation), column = B
    assert res.lut.lookup(2, 1) == 2 and res.lut.lookup(3, 3) == 9


def test_evoapprox_unsigned_and_signed(yosys, tmp_path):
    u = _lut(tmp_path, EVO_8U, "u.v")
    assert u.portmap.convention == "evoapprox" and not u.signed
    assert np.array_equal(u.lut.table, exact_table(8, 8, False))
    s = _lut(tmp_path, EVO_8S, "s.v")
    assert s.signed                                   # from the mul8s_ name
    assert np.array_equal(s.lut.table, exact_table(8, 8, True))
    forced = _lut(tmp_path, EVO_8S, "s2.v", signed=False)
    assert not forced.signed and forced.lut.table[255, 255] == 1   # (-1)*(-1) read as unsigned


def test_explicit_mapping_fixes_orientation(yosys, tmp_path):
    want = np.outer(np.arange(64), np.arange(16) & ~1)
    pos = _lut(tmp_path, SWAPPED, "sw.v", convention="positional")
    assert pos.portmap.a[0][0] == "w"                 # positional takes the first input as A
    exp = _lut(tmp_path, SWAPPED, "sw2.v", explicit={"a": "x", "b": "w", "y": "p"})
    assert exp.lut.table.shape == (64, 16)
    assert np.array_equal(exp.lut.table, want)


def test_lut_file_roundtrip(yosys, tmp_path):
    from axcnn.hw.verilog import write_verilog
    from axcnn.lut import load_lut, save_lut

    v = write_verilog("drum3@6s", tmp_path / "d.v")
    res = _lut(tmp_path, v.read_text(), "d.v")
    path = save_lut(res.lut, tmp_path / "d.npz")
    back = load_lut(path)
    assert back == builtin("drum3@6s") and back.signed
    assert back.provenance["source"] == "circuit" and back.provenance["module"] == "mul_drum3_6s"


@pytest.mark.parametrize("name", ["exact@8u", "mitchell@8u", "bam2_7@8s", "drum4@8s", "trunc3@4s"])
def test_iverilog_agrees(yosys, iverilog, tmp_path, name):
    from axcnn.hw.simulate import iverilog_check, verilog_to_lut
    from axcnn.hw.verilog import write_verilog

    v = write_verilog(name, tmp_path / "m.v")
    res = verilog_to_lut(v, workdir=tmp_path / "w")
    chk = iverilog_check(v, res.lut, res.portmap, res.netlist.module, res.netlist.ports,
                         workdir=tmp_path / "iv", samples=600, seed=1)
    assert chk["checked"] == (256 if name.endswith("4s") else 600)
    assert chk["mismatches"] == 0, chk["examples"]
    assert (tmp_path / "iv" / "commands.sh").is_file()


def test_iverilog_catches_a_wrong_lut(yosys, iverilog, tmp_path):
    from axcnn.hw.simulate import iverilog_check

    res = _lut(tmp_path, SUBXPAT_2X2)
    wrong = builtin("trunc1@2u")
    chk = iverilog_check(tmp_path / "c.v", wrong, res.portmap, res.netlist.module,
                         res.netlist.ports, workdir=tmp_path / "iv", samples=None)
    assert chk["checked"] == 16 and chk["mismatches"] > 0


def test_bad_verilog_is_exit_2_with_yosys_message(yosys, tmp_path):
    from axcnn.hw.netlist import CircuitError

    with pytest.raises(CircuitError) as ei:
        _lut(tmp_path, "module bad(input [3:0] a, output y); assign y = a & ; endmodule\n")
    assert exit_code(ei.value) == 2
    assert "syntax error" in str(ei.value) and "elaborate.log" in str(ei.value)


def test_not_a_multiplier_is_exit_2(yosys, tmp_path):
    from axcnn.hw.ports import PortError

    with pytest.raises(PortError) as ei:
        _lut(tmp_path, "module m(input [3:0] a, input [3:0] b, output [6:0] y);\n"
                       "assign y = a * b; endmodule\n")
    assert exit_code(ei.value) == 2 and "product has 7 bits, expected 8" in str(ei.value)


def test_sequential_design_is_exit_2(yosys, tmp_path):
    from axcnn.hw.netlist import CircuitError

    text = ("module m(input clk, input [1:0] a, input [1:0] b, output reg [3:0] y);\n"
            "always @(posedge clk) y <= a * b; endmodule\n")
    with pytest.raises(CircuitError, match="sequential") as ei:
        _lut(tmp_path, text, convention="explicit",
             explicit={"a": "a", "b": "b", "y": "y"})
    assert exit_code(ei.value) == 2


def test_missing_yosys_is_exit_3(monkeypatch, tmp_path):
    monkeypatch.setenv("AXCNN_YOSYS", str(tmp_path / "no-yosys"))
    with pytest.raises(ToolNotFound) as ei:
        _lut(tmp_path, SUBXPAT_2X2)
    assert exit_code(ei.value) == 3 and "apt-get install -y yosys" in str(ei.value)


def test_tiny_timeout(yosys, tmp_path):
    from axcnn.toolchain import ToolTimeout

    with pytest.raises(ToolTimeout, match="did not finish within"):
        _lut(tmp_path, EVO_8U, timeout=0.001)


def test_step_directory_keeps_script_and_logs(yosys, tmp_path):
    res = _lut(tmp_path, SUBXPAT_2X2)
    wd = res.workdir
    for f in ("elaborate.ys", "elaborate.log", "commands.sh", "netlist.json"):
        assert (wd / f).is_file(), f
    assert "yosys" in (wd / "commands.sh").read_text()
