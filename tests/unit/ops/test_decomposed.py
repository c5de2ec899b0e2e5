"""The decomposed backend on the CPU: exact factorisations of LUTs into int8 GEMM terms, the
backend against the torch/reference backends, factorised error-aware gradients, the cost model
and the explicitly approximate mode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ops_problems import random_problem as _random_problem

from axcnn.errors import BackendUnavailable, exit_code
from axcnn.lut import MultiplierLUT, builtin
from axcnn.ops import approx_conv2d, approx_matmul, get_backend
from axcnn.ops.decomposed import (clear_approximations, factorisation_for, fit_grad_bases,
                                  predict_seconds, use_approximation)
from axcnn.ops.gpu.factor import factorise, lattice_factor, operand_values, truncated_svd
from axcnn.quant import QuantSpec, qparams_from_range, weight_qparams

#: expected int8 GEMM terms of the cheapest exact factorisation (None: no cheap one)
EXPECTED_TERMS = {"mul8u_1JFF": 1, "mul8s_1KV8": 1, "mul8s_1L12": 2, "mul8s_1L2H": 3,
                  "mul8s_1L2N": 3, "mul8s_1KVA": 3, "mul8u_17C8": 5, "mul8u_2AC": 10,
                  "mul8u_185Q": None, "mul8u_L40": None, "mul8u_1DMU": None, "mul8u_2NDH": None}


@pytest.mark.parametrize("name", sorted(EXPECTED_TERMS))
def test_shared_tables_factorise_exactly(name, evoapprox):
    table, info = evoapprox[name]
    signed = bool(info["signed"])
    f = factorise(table, signed)
    if EXPECTED_TERMS[name] is None:
        assert f is None
        return
    assert f is not None and f.exact
    assert f.n_gemms <= EXPECTED_TERMS[name]
    assert np.array_equal(f.reconstruct(), table.astype(np.int64))
    for t in f.terms:
        assert t.u.min() >= -128 and t.u.max() <= 127 and t.v.min() >= -128 and t.v.max() <= 127


@pytest.mark.parametrize("name,bits,signed,max_terms", [
    ("exact", 8, False, 1), ("exact", 8, True, 1), ("exact", 4, False, 1), ("exact", 3, True, 1),
    ("trunc4", 8, False, 5), ("trunc6", 8, True, 7), ("bam1_6", 8, False, 7), ("drum4", 8, False, 3),
    ("drum4", 8, True, 4), ("mitchell", 4, True, 4), ("trunc3", 4, False, 4),
])
def test_builtin_factorisations(name, bits, signed, max_terms):
    lut = builtin(name, bits=bits, signed=signed)
    f = factorise(lut.table, signed)
    assert f is not None and f.n_gemms <= max_terms, f and f.describe()
    assert np.array_equal(f.reconstruct(), lut.table.astype(np.int64))


def test_mixed_width_and_random_low_rank():
    rng = np.random.default_rng(3)
    for R, C, r in [(16, 256, 2), (256, 16, 3), (64, 64, 5)]:
        x = rng.integers(-40, 40, size=(R, r))
        y = rng.integers(-30, 30, size=(r, C))
        av, wv = operand_values(R.bit_length() - 1, True), operand_values(C.bit_length() - 1, True)
        table = np.outer(av, wv) + x @ y
        f = factorise(table, True)
        assert f is not None and f.rank == np.linalg.matrix_rank((x @ y).astype(float))
        assert np.array_equal(f.reconstruct(), table)


def test_lattice_factor_is_integer_and_exact():
    rng = np.random.default_rng(0)
    E = rng.integers(-9, 9, size=(40, 3)) @ rng.integers(-9, 9, size=(3, 30)) * 6
    X, B = lattice_factor(E)
    assert B.shape[0] == 3
    assert np.array_equal((X.astype(np.int64) @ B.astype(np.int64)), E)
    assert lattice_factor(rng.integers(-9, 9, size=(30, 30)), max_rank=5) is None


def test_truncated_svd_reports_residual():
    lut = builtin("mitchell", bits=8)
    f = truncated_svd(lut.table, False, 4)
    assert not f.exact and f.residual["rank"] == 4
    assert f.residual["max_abs"] > 0 and f.residual["mean_abs"] > 0
    more = truncated_svd(lut.table, False, 16)
    assert more.residual["mean_abs"] < f.residual["mean_abs"]


# --------------------------------------------------------------------------------------------

def random_problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, signed):
    assert lut.signed == signed
    return _random_problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, with_grads=True)


SHAPES = [
    (2, 3, 5, 6, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (1, 4, 6, 5, 6, (2, 3), (2, 1), (1, 2), (1, 1), 2),
    (1, 2, 7, 7, 3, (3, 3), (1, 1), (2, 2), (2, 2), 1),
    (2, 5, 7, 7, 3, (1, 1), (2, 3), (0, 0), (1, 1), 1),
    (2, 4, 5, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 4),
]


@pytest.mark.parametrize("lut_name,bits,signed", [
    ("drum4", 8, False), ("drum4", 8, True), ("trunc6", 8, True), ("bam1_6", 8, False),
    ("mitchell", 4, True), ("trunc3", 4, False), ("exact", 8, False),
])
def test_backend_matches_torch_and_reference(lut_name, bits, signed):
    gen = torch.Generator().manual_seed(bits)
    lut = builtin(lut_name, bits=bits, signed=signed)
    dec, ref = get_backend("decomposed"), get_backend("torch")
    for shape in SHAPES:
        p, _ = random_problem(gen, *shape, lut, signed)
        assert torch.equal(dec.conv2d_acc(p), ref.conv2d_acc(p)), shape
    p, _ = random_problem(gen, *SHAPES[0], lut, signed)
    assert torch.equal(dec.conv2d_acc(p), get_backend("reference").conv2d_acc(p))


def test_exact_products_without_lut():
    gen = torch.Generator().manual_seed(5)
    dec, ref = get_backend("decomposed"), get_backend("torch")
    for signed in (False, True):
        for shape in SHAPES:
            p, _ = random_problem(gen, *shape, builtin("exact", bits=8, signed=signed), signed)
            p.table = None
            p.a_offset = p.w_offset = 0
            assert torch.equal(dec.conv2d_acc(p), ref.conv2d_acc(p))


def test_fused_dequant_equals_unfused():
    from axcnn.ops.functional import _dequant_acc

    gen = torch.Generator().manual_seed(2)
    p, _ = random_problem(gen, *SHAPES[0], builtin("drum4"), False)
    s_a, s_w, bias = torch.tensor(0.0173), torch.rand(4) * 0.01 + 1e-3, torch.randn(4)
    acc = get_backend("torch").conv2d_acc(p)
    y = get_backend("decomposed").conv2d_dequant(p, s_a, s_w, bias)
    assert torch.equal(y, _dequant_acc(acc, s_a, s_w) + bias.view(1, -1, 1, 1))


@pytest.mark.parametrize("signed", [False, True])
def test_matmul(signed):
    gen = torch.Generator().manual_seed(1)
    for lut in (builtin("trunc5", bits=8, signed=signed), builtin("exact", bits=4, signed=signed)):
        lo = -(1 << (lut.a_bits - 1)) if signed else 0
        a = torch.randint(lo, lo + (1 << lut.a_bits), (13, 37), generator=gen)
        w = torch.randint(lo, lo + (1 << lut.w_bits), (37, 9), generator=gen)
        assert torch.equal(approx_matmul(a, w, lut, backend="decomposed"),
                           approx_matmul(a, w, lut, backend="torch"))


@pytest.mark.parametrize("lut_name,signed", [("drum4", False), ("trunc6", True), ("exact", False)])
def test_error_aware_gradients_match_torch(lut_name, signed):
    gen = torch.Generator().manual_seed(7)
    lut = builtin(lut_name, bits=8, signed=signed)
    dec, ref = get_backend("decomposed"), get_backend("torch")
    for shape in SHAPES:
        p, lt = random_problem(gen, *shape, lut, signed)
        gy_shape = ref.conv2d_acc(p).shape
        gy = torch.randn(gy_shape, generator=gen)
        s_a, s_w = torch.tensor(0.02), torch.rand(gy_shape[1], generator=gen) * 0.01 + 1e-3
        got = dec.error_aware_grads(p, gy, s_a, s_w, lt, True, True)
        want = ref.error_aware_grads(p, gy, s_a, s_w, lt, True, True)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item()), shape
        # CUDA training keeps n_a on the device (and knows the signedness): same numbers
        pt = dataclasses.replace(p, n_a=torch.tensor(p.n_a), signed=signed)
        assert torch.equal(ref.conv2d_acc(pt), ref.conv2d_acc(p))
        got_t = dec.error_aware_grads(pt, gy, s_a, s_w, lt, True, True)
        for a, b in zip(got_t, got):
            assert torch.equal(a, b), shape


def test_grad_bases_reject_foreign_tables():
    lut = builtin("drum4")
    f = factorise(lut.table, False)
    rng = np.random.default_rng(0)
    assert fit_grad_bases(f, rng.normal(size=(256, 256)), rng.normal(size=(256, 256))) is None


def test_layer_level_forward_and_backward():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 7, 7, generator=g) * 2 - 0.5
    w = torch.randn(5, 3, 3, 3, generator=g) * 0.3
    a_q = qparams_from_range(x.min(), x.max(), 8, False)
    w_q = weight_qparams(w, 8, False, True)
    lut = builtin("trunc5")
    outs = {}
    for backend in ("torch", "decomposed"):
        xx, ww = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        y = approx_conv2d(xx, ww, None, 1, 1, a_qparams=a_q, w_qparams=w_q,
                          spec=QuantSpec(8, 8, False, True), lut=lut, grad_rule="error_aware",
                          backend=backend)
        y.sum().backward()
        outs[backend] = (y.detach(), xx.grad, ww.grad)
    assert torch.equal(outs["torch"][0], outs["decomposed"][0])
    for a, b in zip(outs["torch"][1:], outs["decomposed"][1:]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_no_cheap_factorisation_raises_backend_unavailable():
    x = torch.rand(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3)
    q = dict(a_qparams=qparams_from_range(x.min(), x.max(), 8, False),
             w_qparams=weight_qparams(w, 8, False, False))
    with pytest.raises(BackendUnavailable, match="factorisation") as info:
        approx_conv2d(x, w, padding=1, lut=builtin("mitchell"), backend="decomposed", **q)
    assert exit_code(info.value) == 3


def test_approximate_mode_only_on_request():
    lut = builtin("mitchell", bits=8)
    x = torch.rand(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3)
    q = dict(a_qparams=qparams_from_range(x.min(), x.max(), 8, False),
             w_qparams=weight_qparams(w, 8, False, False))
    try:
        report = use_approximation(lut, rank=8)
        assert report["rank"] == 8 and report["max_abs"] > 0
        y = approx_conv2d(x, w, padding=1, lut=lut, backend="decomposed", **q)
        y_ref = approx_conv2d(x, w, padding=1, lut=lut, backend="torch", **q)
        assert y.shape == y_ref.shape
        assert not torch.equal(y, y_ref)      # approximate by request
        rel = ((y - y_ref).norm() / y_ref.norm()).item()
        assert rel < 0.05
    finally:
        clear_approximations()
    with pytest.raises(BackendUnavailable):
        approx_conv2d(x, w, padding=1, lut=lut, backend="decomposed", **q)


def test_factorisation_cache_and_cost_model():
    from axcnn.ops.triton_backend import ConvShape

    t = torch.from_numpy(builtin("trunc4").table.copy())
    e1 = factorisation_for(t, False)
    assert factorisation_for(t, False) is e1
    assert factorisation_for(t.clone(), False) is e1     # same content, same entry
    wide = ConvShape(256, 64, 8, 8, 64, 1, 3, 3, 8, 8, (1, 1), (1, 1), (1, 1))
    assert predict_seconds(wide, "tc", 2) < predict_seconds(wide, "lut")
    assert predict_seconds(wide, "tc", 200) > predict_seconds(wide, "lut")


def test_auto_on_cpu_is_still_torch():
    assert get_backend("auto", "cpu").kind.value == "torch"
    assert get_backend("decomposed", "cpu").kind.value == "decomposed"


def test_non_square_signed_lut():
    lut = MultiplierLUT(np.outer(operand_values(4, True), operand_values(8, True)) + 3, signed=True)
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-8, 8, (20, 11), generator=gen)
    w = torch.randint(-128, 128, (11, 7), generator=gen)
    assert torch.equal(approx_matmul(a, w, lut, backend="decomposed"),
                       approx_matmul(a, w, lut, backend="reference"))
