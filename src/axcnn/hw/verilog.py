"""Verilog generators for the built-in multiplier families of :mod:`axcnn.lut.families`.

Every generated module has ports ``a`` (operand A = activation, ``a_bits`` wide), ``b``
(operand B = weight) and ``y`` (the ``a_bits + w_bits``-bit product), the "plain"
convention of :mod:`axcnn.hw.ports`, which is also what SubXPAT accepts as a benchmark.
Each circuit simulates to exactly the table of ``builtin(name)``:

- ``exact``: ``y = a * b`` (yosys builds the array multiplier);
- ``truncK`` / ``bamH_V``: an array multiplier whose partial products ``a[i] & b[j]`` with
  ``i + j < K`` (trunc) or ``j < H`` or ``i + j < V`` (bam) are left out, summed row by row;
- ``drumK``: leading-one detectors, K-bit operand fragments (lowest kept bit forced to 1), a
  K x K multiplier and a barrel shifter;
- ``mitchell``: leading-one detectors, the two residues, their cross-shifted sum and the
  piecewise-linear antilogarithm.

Signed circuits (two's complement ports) wrap the unsigned core in sign-magnitude logic, as the
functional model does: magnitudes ``|a|``, ``|b|`` (``|-2^(b-1)|`` still fits b unsigned bits),
the core product, and a final conditional negation by ``sign(a) xor sign(b)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import __version__
from ..lut import BuiltinSpec, parse_builtin


def module_name(spec: BuiltinSpec) -> str:
    """``mul_<name>`` e.g. ``mul_trunc6_8u``, ``mul_bam2_6_8x4s``."""
    return f"mul_{spec.name}"


def _bits(n: int) -> int:
    """Bits needed to hold the values 0..n."""
    return max(1, int(n).bit_length())


def _pp_core(spec: BuiltinSpec, keep) -> list[str]:
    A, W = spec.a_bits, spec.w_bits
    O = A + W
    lines = [f"  // partial-product rows (row j = ua & ub[j], shifted by j); dropped products are 0"]
    rows = []
    for j in range(W):
        mask = "".join("1" if keep(i, j) else "0" for i in reversed(range(A)))
        if "1" not in mask:
            lines.append(f"  // row {j}: every partial product dropped")
            continue
        lines.append(f"  wire [{A - 1}:0] pp{j} = ua & {{{A}{{ub[{j}]}}}} & {A}'b{mask};")
        rows.append(f"({{{W}'d0, pp{j}}} << {j})" if j else f"{{{W}'d0, pp{j}}}")
    if rows:
        lines.append(f"  assign p = {' + '.join(rows)};")
    else:
        lines.append(f"  assign p = {O}'d0;")
    return lines


def _lead_one(var: str, width: int, out: str) -> list[str]:
    """Priority encoder: ``out`` = index of the leading one of ``var`` (0 when var == 0)."""
    lb = _bits(width - 1)
    lines = [f"  reg [{lb - 1}:0] {out};", "  always @* begin", f"    {out} = {lb}'d0;"]
    for i in range(1, width):
        lines.append(f"    if ({var}[{i}]) {out} = {lb}'d{i};")
    lines.append("  end")
    return lines


def _drum_operand(var: str, width: int, k: int, tag: str) -> tuple[list[str], str, str, int]:
    """Lines computing the K-bit fragment and the shift of one DRUM operand."""
    if width <= k:
        return [f"  // operand {tag}: {width} <= K bits, used exactly"], var, "", width
    lb = _bits(width - 1)
    sb = _bits(width - k)
    lines = _lead_one(var, width, f"lead_{tag}")
    lines += [
        f"  // shift_{tag} = max(lead + 1 - K, 0); frag_{tag} = (x >> shift) | (shift != 0)",
        f"  wire [{sb - 1}:0] shift_{tag} = (lead_{tag} >= {lb}'d{k}) ? "
        f"(lead_{tag} - {lb}'d{k - 1}) : {sb}'d0;",
        f"  wire [{width - 1}:0] hi_{tag} = {var} >> shift_{tag};",
        f"  wire [{k - 1}:0] frag_{tag} = hi_{tag}[{k - 1}:0] | "
        f"{{{{{k - 1}{{1'b0}}}}, shift_{tag} != {sb}'d0}};",
    ]
    return lines, f"frag_{tag}", f"shift_{tag}", k


def _drum_core(spec: BuiltinSpec) -> list[str]:
    A, W = spec.a_bits, spec.w_bits
    O = A + W
    k = spec.params["k"]
    la, fa, ta, wa = _drum_operand("ua", A, k, "a")
    lw, fw, tw, ww = _drum_operand("ub", W, k, "b")
    lines = ["  // DRUM: leading-one detection, K-bit fragments, K x K product, shift back"]
    lines += la + lw
    lines.append(f"  wire [{wa + ww - 1}:0] m = {fa} * {fw};")
    shifts = [t for t in (ta, tw) if t]
    if shifts:
        sb = _bits(O)
        lines.append(f"  wire [{sb - 1}:0] sh = " + " + ".join(f"{sb}'d0 + {t}" for t in shifts) + ";")
        lines.append(f"  assign p = {{{{{O - wa - ww}{{1'b0}}}}, m}} << sh;" if O > wa + ww
                     else "  assign p = m << sh;")
    else:
        lines.append(f"  assign p = m;" if O == wa + ww else f"  assign p = {{{{{O - wa - ww}{{1'b0}}}}, m}};")
    return lines


def _mitchell_core(spec: BuiltinSpec) -> list[str]:
    A, W = spec.a_bits, spec.w_bits
    O = A + W
    sb = _bits(A + W - 2)
    lines = ["  // Mitchell: a = 2^k1 + r1, b = 2^k2 + r2, s = r1*2^k2 + r2*2^k1,",
             "  // p = 2^(k1+k2) + s if s < 2^(k1+k2) else 2*s; 0 if an operand is 0"]
    lines += _lead_one("ua", A, "k1")
    lines += _lead_one("ub", W, "k2")
    lines += [
        f"  wire [{A - 1}:0] r1 = ua & ~({A}'d1 << k1);",
        f"  wire [{W - 1}:0] r2 = ub & ~({W}'d1 << k2);",
        f"  wire [{sb - 1}:0] ks = k1 + k2;",
        f"  wire [{O - 1}:0] s = ({{{{{W}{{1'b0}}}}, r1}} << k2) + ({{{{{A}{{1'b0}}}}, r2}} << k1);",
        f"  wire [{O - 1}:0] base = {O}'d1 << ks;",
        f"  wire nz = (|ua) & (|ub);",
        f"  assign p = !nz ? {O}'d0 : (s < base) ? (base + s) : (s << 1);",
    ]
    return lines


def generate_verilog(name: str | BuiltinSpec, bits: int | None = None, signed: bool | None = None,
                     w_bits: int | None = None, *, module: str | None = None) -> str:
    """Verilog source of the built-in multiplier ``name`` (e.g. ``trunc6``, ``drum4@8s``)."""
    spec = name if isinstance(name, BuiltinSpec) else parse_builtin(name, bits, signed, w_bits)
    A, W = spec.a_bits, spec.w_bits
    O = A + W
    mod = module or module_name(spec)
    sgn = "signed " if spec.signed else ""
    head = [
        f"// {spec.spec}: {spec.family} multiplier, {A}x{W} bits, "
        f"{'signed (two' + chr(39) + 's complement, sign-magnitude core)' if spec.signed else 'unsigned'}",
        f"// generated by axcnn {__version__}; operand A (activation) = a, operand B (weight) = b",
        f"module {mod} (a, b, y);",
        f"  input {sgn}[{A - 1}:0] a;",
        f"  input {sgn}[{W - 1}:0] b;",
        f"  output {sgn}[{O - 1}:0] y;",
    ]
    if spec.signed:
        head += [
            "  // sign-magnitude wrapper: magnitudes, unsigned core, conditional negation",
            f"  wire sa = a[{A - 1}];",
            f"  wire sb = b[{W - 1}];",
            f"  wire [{A - 1}:0] ua = sa ? (~a + {A}'d1) : a;",
            f"  wire [{W - 1}:0] ub = sb ? (~b + {W}'d1) : b;",
        ]
    else:
        head += [f"  wire [{A - 1}:0] ua = a;", f"  wire [{W - 1}:0] ub = b;"]
    head.append(f"  wire [{O - 1}:0] p;  // unsigned core product")
    fam = spec.family
    if fam == "exact":
        core = ["  assign p = ua * ub;"]
    elif fam == "trunc":
        k = spec.params["k"]
        core = [f"  // truncated: partial products with i + j < {k} dropped"]
        core += _pp_core(spec, lambda i, j: i + j >= k)
    elif fam == "bam":
        h, v = spec.params["h"], spec.params["v"]
        core = [f"  // broken array: rows j < {h} and columns i + j < {v} dropped"]
        core += _pp_core(spec, lambda i, j: j >= h and i + j >= v)
    elif fam == "drum":
        core = _drum_core(spec)
    elif fam == "mitchell":
        core = _mitchell_core(spec)
    else:  # pragma: no cover - parse_builtin only returns known families
        raise ValueError(f"no generator for family {fam}")
    tail = ([f"  assign y = (sa ^ sb) ? (~p + {O}'d1) : p;"] if spec.signed else ["  assign y = p;"])
    return "\n".join(head + core + tail + ["endmodule", ""])


def write_verilog(name: str | BuiltinSpec, path: str | os.PathLike, bits: int | None = None,
                  signed: bool | None = None, w_bits: int | None = None, *,
                  module: str | None = None) -> Path:
    """Write the generated Verilog of ``name`` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generate_verilog(name, bits, signed, w_bits, module=module))
    return path
