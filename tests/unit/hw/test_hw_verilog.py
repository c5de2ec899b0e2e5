"""Generated Verilog of every built-in family simulates to exactly its functional table."""

from __future__ import annotations

import numpy as np
import pytest

from axcnn.hw.verilog import generate_verilog, module_name, write_verilog
from axcnn.lut import builtin, exact_table, family_grid, parse_builtin


def _cases():
    out = []
    for bits in (2, 4, 8):
        for signed in (False, True):
            for name in family_grid(bits):
                try:
                    parse_builtin(name, bits, signed)
                except Exception:
                    continue
                out.append(pytest.param(name, bits, signed, id=f"{name}@{bits}{'s' if signed else 'u'}"))
    # mixed operand widths
    for name in ("exact", "trunc5", "bam1_5", "drum3", "mitchell"):
        out.append(pytest.param(name, (8, 4), False, id=f"{name}@8x4u"))
        out.append(pytest.param(name, (3, 6), True, id=f"{name}@3x6s"))
    return out


def test_text_without_tools():
    spec = parse_builtin("bam2_6", 8, True)
    text = generate_verilog(spec)
    assert module_name(spec) == "mul_bam2_6_8s"
    assert "module mul_bam2_6_8s (a, b, y);" in text
    assert "input signed [7:0] a;" in text and "output signed [15:0] y;" in text
    assert "builtin:bam2_6@8s" in text
    assert "module mine (a, b, y);" in generate_verilog("exact@4u", module="mine")


@pytest.mark.eda
@pytest.mark.parametrize("name, bits, signed", _cases())
def test_generated_circuit_matches_functional_table(yosys, tmp_path, name, bits, signed):
    from axcnn.hw.simulate import verilog_to_lut

    a_bits, w_bits = bits if isinstance(bits, tuple) else (bits, bits)
    spec = parse_builtin(name, a_bits, signed, w_bits)
    v = write_verilog(spec, tmp_path / f"{spec.name}.v")
    res = verilog_to_lut(v, workdir=tmp_path / "work")       # signedness auto-detected
    ref = builtin(name, a_bits, signed, w_bits)
    assert res.signed == signed
    assert res.lut.table.shape == ref.table.shape            # all 2^(a+w) pairs
    diff = np.argwhere(res.lut.table != ref.table)
    assert diff.size == 0, f"{spec.name}: {len(diff)} pairs differ, e.g. {diff[:3].tolist()}"


@pytest.mark.eda
@pytest.mark.parametrize("signed", [False, True], ids=["8u", "8s"])
def test_exact_8x8_is_the_exact_product(yosys, tmp_path, signed):
    from axcnn.hw.simulate import verilog_to_lut

    v = write_verilog("exact", tmp_path / "exact.v", 8, signed)
    res = verilog_to_lut(v, workdir=tmp_path / "w")
    assert res.lut.table.shape == (256, 256)
    assert np.array_equal(res.lut.table, exact_table(8, 8, signed))
    assert res.lut.is_exact()
