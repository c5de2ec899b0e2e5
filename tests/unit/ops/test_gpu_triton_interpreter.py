"""The Triton kernels on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``).

The interpreter must be switched on before Triton compiles anything, so the checks run in a
child process (``test_kernels_under_the_interpreter``); they skip where Triton is missing. The
same checks run for real on a GPU machine in ``test_gpu_backends.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import pytest
import torch

INNER = os.environ.get("AXCNN_TRITON_INTERPRETER_RUN") == "1"
HAVE_TRITON = importlib.util.find_spec("triton") is not None

pytestmark = pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed")


@pytest.mark.slow
@pytest.mark.skipif(INNER, reason="driver of the interpreter run")
def test_kernels_under_the_interpreter():
    from ops_problems import run_inner_tests_under_interpreter

    run_inner_tests_under_interpreter(__file__, "AXCNN_TRITON_INTERPRETER_RUN")


inner = pytest.mark.skipif(not INNER, reason="runs inside the interpreter child process")


def _problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, signed, with_grads=False,
             window=2):
    from ops_problems import random_problem

    assert lut.signed == signed
    return random_problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut,
                          with_grads=with_grads, window=window)


SHAPES = [
    (2, 3, 5, 6, 20, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (1, 4, 6, 5, 6, (2, 3), (2, 1), (1, 2), (1, 1), 2),
    (1, 2, 7, 7, 3, (3, 3), (1, 1), (2, 2), (2, 2), 1),
    (2, 5, 7, 7, 3, (1, 1), (2, 3), (0, 0), (1, 1), 1),
    (2, 4, 5, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 4),      # depthwise
    (1, 3, 6, 6, 6, (3, 3), (2, 2), (1, 1), (2, 2), 3),      # channel multiplier 2
]


@inner
@pytest.mark.parametrize("lut_name,bits,signed", [
    ("drum4", 8, False), ("drum4", 8, True), ("mitchell", 8, False), ("trunc6", 8, True),
    ("mitchell", 4, True), ("trunc3", 4, False),
])
def test_inner_forward_bit_exact(lut_name, bits, signed):
    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(bits)
    lut = builtin(lut_name, bits=bits, signed=signed)
    ref = get_backend("torch")
    tri, dec = get_backend("triton", "cpu"), get_backend("decomposed", "cpu")
    for shape in SHAPES:
        p, _ = _problem(gen, *shape, lut, signed)
        want = ref.conv2d_acc(p)
        assert torch.equal(tri.conv2d_acc(p), want), shape
        tbm.FORCE_MODE = "direct"       # the direct-gather kernel
        try:
            assert torch.equal(tri.conv2d_acc(p), want), shape
        finally:
            tbm.FORCE_MODE = None
        old = tbm.TAP_TABLE_MAX
        tbm.TAP_TABLE_MAX = 1           # per-tap tables in chunks of output channels
        try:
            assert torch.equal(tri.conv2d_acc(p), want), shape
        finally:
            tbm.TAP_TABLE_MAX = old
        if lut_name != "mitchell" or bits == 4:
            assert torch.equal(dec.conv2d_acc(p), want), shape
        p.table = None                   # exact products (tensor-core kernel)
        assert torch.equal(tri.conv2d_acc(p), ref.conv2d_acc(p)), shape


@inner
def test_inner_fused_dequant_and_gemm():
    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.functional import _dequant_acc

    gen = torch.Generator().manual_seed(3)
    lut = builtin("trunc5", bits=8)
    ref = get_backend("torch")
    for impl in (get_backend("triton", "cpu"), get_backend("decomposed", "cpu")):
        p, lt = _problem(gen, *SHAPES[0], lut, False)
        s_a, s_w, bias = torch.tensor(0.0173), torch.rand(20, generator=gen) * 0.01, torch.randn(20)
        want = _dequant_acc(ref.conv2d_acc(p), s_a, s_w) + bias.view(1, -1, 1, 1)
        assert torch.equal(impl.conv2d_dequant(p, s_a, s_w, bias), want)
        a = torch.randint(0, 256, (37, 2, 29), generator=gen)
        w = torch.randint(0, 256, (2, 29, 19), generator=gen)
        assert torch.equal(impl.lut_gemm(a, w, lt.table), ref.lut_gemm(a, w, lt.table))


@inner
@pytest.mark.parametrize("lut_name,signed,window,tables", [
    ("drum4", False, 2, "int16"), ("mitchell", True, 2, "int16"), ("drum4", False, 16, "int16"),
    ("drum4", False, 128, "float32"),     # numerators beyond int16
    ("mitchell", True, 2, "custom"),      # tables not made from the window: gathered as float32
])
def test_inner_error_aware_gradients(lut_name, signed, window, tables):
    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.triton_backend import grad_fractions

    gen = torch.Generator().manual_seed(11)
    lut = builtin(lut_name, bits=8, signed=signed)
    ref, tri = get_backend("torch"), get_backend("triton", "cpu")
    for shape in SHAPES:                  # depthwise and channel multiplier included
        p, lt = _problem(gen, *shape, lut, signed, with_grads=True, window=window)
        if tables == "custom":
            lt = dataclasses.replace(lt, grad_a=lt.grad_a + 0.375, grad_w=lt.grad_w * 0.5)
        assert (grad_fractions(lt) is not None) == (tables == "int16")
        gy = torch.randn(ref.conv2d_acc(p).shape, generator=gen)
        s_a, s_w = torch.tensor(0.02), torch.rand(gy.shape[1], generator=gen) * 0.01 + 1e-3
        got = tri.error_aware_grads(p, gy, s_a, s_w, lt, True, True)
        want = ref.error_aware_grads(p, gy, s_a, s_w, lt, True, True)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item()), shape
        # CUDA training keeps n_a on the device: the same numbers from a 0-dim tensor
        pt = dataclasses.replace(p, n_a=torch.tensor(p.n_a), signed=signed)
        assert torch.equal(tri.conv2d_acc(pt), ref.conv2d_acc(p))
        got_t = tri.error_aware_grads(pt, gy, s_a, s_w, lt, True, True)
        for a, b in zip(got_t, got):
            assert torch.equal(a, b), shape


@inner
def test_inner_weight_cache_reuse_and_rebuild():
    """A cached weight side gives the same results as a fresh one; zero points, scales and
    bias stay per call; an in-place change of the weights (version bump) rebuilds."""
    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.functional import _dequant_acc

    gen = torch.Generator().manual_seed(21)
    lut = builtin("trunc5", bits=8)            # factorisable: both backends run it
    ref = get_backend("torch")
    tri, dec = get_backend("triton", "cpu"), get_backend("decomposed", "cpu")
    # plain, grouped, depthwise, channel multiplier; then exact products (table None)
    for shape in (SHAPES[0], SHAPES[1], SHAPES[4], SHAPES[5]):
        for exact in (False, True):
            for impl in (tri, dec):
                p, _ = _problem(gen, *shape, lut, False)
                if exact:
                    p.table = None
                cache = impl.weight_cache
                want = ref.conv2d_acc(p)
                h0, s0 = cache.hits, cache.stores
                for _ in range(3):
                    assert torch.equal(impl.conv2d_acc(p), want), (shape, impl.kind)
                assert (cache.stores, cache.hits) == (s0 + 1, h0 + 1), (shape, impl.kind)
                # new zero points and scales on the same (cached) weights
                OC = shape[4]
                p.n_a = p.n_a - 3.0
                p.n_w = -torch.randint(0, 200, (OC,), generator=gen).float()
                want = ref.conv2d_acc(p)
                assert torch.equal(impl.conv2d_acc(p), want), (shape, impl.kind)
                s_a = torch.tensor(0.0213)
                for s_w in (torch.rand(OC, generator=gen) * 0.01 + 1e-3, torch.tensor(0.004)):
                    bias = torch.randn(OC, generator=gen)
                    got = impl.conv2d_dequant(p, s_a, s_w, bias)
                    assert torch.equal(got, _dequant_acc(want, s_a, s_w) + bias.view(1, -1, 1, 1))
                assert cache.hits == h0 + 4 and cache.stores == s0 + 1
                # in-place change: rebuilt (not stored again until seen twice unchanged)
                p.qw[0].fill_(5.0)
                want = ref.conv2d_acc(p)
                assert torch.equal(impl.conv2d_acc(p), want), (shape, impl.kind)
                assert cache.hits == h0 + 4
                assert torch.equal(impl.conv2d_acc(p), want)
                assert torch.equal(impl.conv2d_acc(p), want)
                assert (cache.stores, cache.hits) == (s0 + 2, h0 + 5)
                # an equal tensor that is another object is not a hit
                p.qw = p.qw.clone()
                assert torch.equal(impl.conv2d_acc(p), want)
                assert cache.hits == h0 + 5


@inner
def test_inner_weight_cache_modes_and_switch():
    import gc

    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(22)
    lut = builtin("mitchell", bits=8, signed=True)
    ref, tri = get_backend("torch"), get_backend("triton", "cpu")
    cache = tri.weight_cache
    p, _ = _problem(gen, *SHAPES[0], lut, True)
    want = ref.conv2d_acc(p)
    for mode in ("direct", "tap"):          # separate entries per kernel kind
        tbm.FORCE_MODE = mode
        try:
            h0 = cache.hits
            for _ in range(3):
                assert torch.equal(tri.conv2d_acc(p), want), mode
            assert cache.hits == h0 + 1, mode
        finally:
            tbm.FORCE_MODE = None
    tbm.WEIGHT_CACHE = False
    try:
        h0, m0 = cache.hits, cache.misses
        for _ in range(2):
            assert torch.equal(tri.conv2d_acc(p), want)
        assert cache.hits == h0 and cache.misses == m0 + 2
    finally:
        tbm.WEIGHT_CACHE = True
    # freed weights drop their entries (two for the first tensor: direct and tap)
    n0, old = len(cache), p.qw
    p.qw = old.clone()
    tri.conv2d_acc(p)
    tri.conv2d_acc(p)
    assert len(cache) == n0 + 1
    del old
    p.qw = None
    gc.collect()
    assert len(cache) == n0 - 2


@inner
def test_inner_activation_layouts_and_index_pass():
    """Float codes read in place in any layout (channels-last, strided views), n_w / s_w as
    expanded views, n_a as a device tensor, and the uint8 index pass for every kernel kind."""
    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.functional import _dequant_acc
    from axcnn.ops.problem import IntConvProblem
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(23)
    lut = builtin("drum4", bits=8)
    ref = get_backend("torch")
    tri, dec = get_backend("triton", "cpu"), get_backend("decomposed", "cpu")
    saved = {k: tbm.CONFIG[k]["a_index"] for k in ("lut", "dw", "tc")}
    try:
        for shape in SHAPES:
            p, _ = _problem(gen, *shape, lut, False)
            OC = shape[4]
            p.n_w = p.n_w[:1].expand(OC)
            want = ref.conv2d_acc(p)
            s_a, s_w = torch.tensor(0.011), torch.tensor(0.003).expand(OC)
            want_f = _dequant_acc(want, s_a, s_w.reshape(-1))
            qa = p.qa
            wide = torch.cat([qa, qa], dim=3)
            layouts = [qa.contiguous(memory_format=torch.channels_last), wide[..., :qa.shape[3]]]
            for a_index in (False, True):
                for k in saved:
                    tbm.CONFIG[k]["a_index"] = a_index
                for x in layouts:
                    p.qa = x
                    for impl in (tri, dec):
                        assert torch.equal(impl.conv2d_acc(p), want), (shape, impl.kind, a_index)
                        assert torch.equal(impl.conv2d_dequant(p, s_a, s_w), want_f)
                p.qa = qa
            p.n_a = torch.tensor(p.n_a)
            assert torch.equal(tri.conv2d_acc(p), want)
            assert torch.equal(dec.conv2d_acc(p), want)
        # the 64-bit offset variant (chosen for activations of >= 2^31 elements)
        for shape in (SHAPES[0], SHAPES[4]):
            p, lt = _problem(gen, *shape, lut, False)
            want = ref.conv2d_acc(p)
            s = tbm.ConvShape.of(p)
            cargs = tbm.column_args(p.n_a, p.n_w, s.OC, torch.device("cpu"))
            for a_index in (False, True):
                act = tbm.activation_operand(p.qa, p.a_offset, a_index)
                act.a64 = True
                lut16, mid = tbm.cached_lut16(p.table)
                run = tbm.run_dw_conv if s.Cg == 1 and s.G > 1 else tbm.run_lut_conv
                got = run(act, p.qw, lut16, mid, s, cargs, p.a_offset, p.w_offset)
                assert torch.equal(got, want), shape
                df = tbm.exact_device_factorisation(False, False, torch.device("cpu"))
                q = IntConvProblem(p.qa, p.qw, p.n_a, p.n_w, p.geometry)
                got = tbm.run_tc_conv(act, p.qw, df, s, cargs, 0, 0)
                assert torch.equal(got, ref.conv2d_acc(q)), shape
    finally:
        for k, v in saved.items():
            tbm.CONFIG[k]["a_index"] = v


@inner
def test_inner_gemm_weight_cache():
    from axcnn.lut import builtin
    from axcnn.ops import LUTTensors, get_backend

    gen = torch.Generator().manual_seed(24)
    lt = LUTTensors.from_lut(builtin("drum4", bits=8), "cpu")
    ref = get_backend("torch")
    a = torch.randint(0, 256, (2, 41, 23), generator=gen).permute(1, 0, 2)   # strided (41, 2, 23)
    w = torch.randint(0, 256, (2, 23, 11), generator=gen)
    want = ref.lut_gemm(a, w, lt.table)
    for impl in (get_backend("triton", "cpu"), get_backend("decomposed", "cpu")):
        h0 = impl.weight_cache.hits
        for _ in range(3):
            assert torch.equal(impl.lut_gemm(a, w, lt.table), want), impl.kind
        assert impl.weight_cache.hits == h0 + 1, impl.kind


@inner
def test_inner_tensor_core_kernel_in_several_launches():
    """More than four scale classes, or more terms than fit the shared memory: several
    launches (column terms in the first), summed, then the unfused dequantisation -- still
    bit-identical."""
    import dataclasses

    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.decomposed import factorisation_for
    from axcnn.ops.functional import _dequant_acc
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(25)
    lut = builtin("trunc5", bits=8)
    ref = get_backend("torch")
    dev = torch.device("cpu")
    for shape in (SHAPES[0], SHAPES[1]):
        p, lt = _problem(gen, *shape, lut, False)
        df = tbm.DeviceFactorisation.build(factorisation_for(lt.table, False).factorisation, dev)
        T = df.U.shape[0]
        assert T >= 5
        bound = [int(df.U[t].abs().max()) * int(df.Vtab[t].abs().max()) for t in range(T)]
        df6 = dataclasses.replace(df, classes=[(1, 1)] * T, bound=bound)
        s = tbm.ConvShape.of(p)
        OC = shape[4]
        s_a, s_w, bias = torch.tensor(0.017), torch.rand(OC, generator=gen) * 0.01, torch.randn(OC)
        want = ref.conv2d_acc(p)
        saved = tbm.tc_term_bytes
        try:
            for a_index, tiny_smem in ((False, False), (True, False), (False, True)):
                # tiny_smem: one term per launch, so the one scale class of df is split
                tbm.tc_term_bytes = (lambda BM, BN, BK: 1 << 40) if tiny_smem else saved
                d = df if tiny_smem else df6
                act = tbm.activation_operand(p.qa, p.a_offset, a_index)
                cargs = tbm.column_args(p.n_a, p.n_w, OC, dev)
                got = tbm.run_tc_conv(act, p.qw, d, s, cargs, p.a_offset, p.w_offset)
                assert torch.equal(got, want), shape
                cargs = tbm.column_args(p.n_a, p.n_w, OC, dev, s_a, s_w, bias)
                got = tbm.run_tc_conv(act, p.qw, d, s, cargs, p.a_offset, p.w_offset)
                assert torch.equal(got, _dequant_acc(want, s_a, s_w) + bias.view(1, -1, 1, 1))
        finally:
            tbm.tc_term_bytes = saved


@inner
def test_inner_tensor_core_split_k_and_packed_taps():
    """Small grids split the tensor-core kernel along K (partials summed, column constants
    once), and K tiles run over channel runs of one tap or over the flattened taps (narrow
    layers): identical accumulators and dequantised outputs in every combination, in one
    launch and in several (more than four scale classes)."""
    import dataclasses

    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.decomposed import factorisation_for
    from axcnn.ops.functional import _dequant_acc
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(26)
    ref = get_backend("torch")
    dev = torch.device("cpu")
    saved_sms, saved_split = tbm.sm_count, tbm.CONFIG["tc"]["split"]
    saved_packed = tbm.CONFIG["tc"]["packed_below"]
    saved_tiles = tbm.CONFIG["tc"]["map_ch_tiles"]
    tbm.sm_count = lambda device: 64          # pretend a big card: every test grid is small
    try:
        for lut_name, signed in (("trunc5", False), ("drum4", False), ("exact", True)):
            lut = builtin(lut_name, bits=8, signed=signed)
            wide_k = (1, 24, 7, 7, 5, (5, 5), (1, 1), (2, 2), (1, 1), 1)   # K = 600: splits
            for shape in (SHAPES[0], SHAPES[1], SHAPES[3]) + ((wide_k,) if signed else ()):
                p, lt = _problem(gen, *shape, lut, signed)
                f = factorisation_for(lt.table, signed).factorisation
                if f is None:
                    continue
                df = tbm.DeviceFactorisation.build(f, dev)
                T = df.U.shape[0]
                bound = [int(df.U[t].abs().max()) * int(df.Vtab[t].abs().max()) for t in range(T)]
                variants = [df, dataclasses.replace(df, classes=[(1, 1)] * T, bound=bound)]
                s = tbm.ConvShape.of(p)
                OC = shape[4]
                s_a, s_w = torch.tensor(0.017), torch.rand(OC, generator=gen) * 0.01
                bias = torch.randn(OC, generator=gen)
                want = ref.conv2d_acc(p)
                want_f = _dequant_acc(want, s_a, s_w) + bias.view(1, -1, 1, 1)
                act = tbm.activation_operand(p.qa, p.a_offset)
                for split, packed_below, ch_tiles in ((False, 0, 0), (True, 0, 1000),
                                                      (False, 1000, 1000), (True, 1000, 0)):
                    tbm.CONFIG["tc"]["split"] = split
                    tbm.CONFIG["tc"]["packed_below"] = packed_below
                    tbm.CONFIG["tc"]["map_ch_tiles"] = ch_tiles     # both map tile layouts
                    for d in variants:
                        cargs = tbm.column_args(p.n_a, p.n_w, OC, dev)
                        got = tbm.run_tc_conv(act, p.qw, d, s, cargs, p.a_offset, p.w_offset)
                        assert torch.equal(got, want), (lut_name, shape, split, packed_below)
                        cargs = tbm.column_args(p.n_a, p.n_w, OC, dev, s_a, s_w, bias)
                        got = tbm.run_tc_conv(act, p.qw, d, s, cargs, p.a_offset, p.w_offset)
                        assert torch.equal(got, want_f), (lut_name, shape, split, packed_below)
    finally:
        tbm.sm_count, tbm.CONFIG["tc"]["split"] = saved_sms, saved_split
        tbm.CONFIG["tc"]["packed_below"] = saved_packed
        tbm.CONFIG["tc"]["map_ch_tiles"] = saved_tiles


@inner
def test_inner_tensor_core_launch_retries_when_shared_memory_is_short():
    """A launch that Triton rejects for its shared memory (OutOfResources, raised before
    anything runs) is retried with fewer pipeline stages, then with fewer terms per launch;
    the working choice is remembered, and the result is still bit-identical."""
    from triton.runtime.errors import OutOfResources

    from axcnn.lut import builtin
    from axcnn.ops import get_backend
    from axcnn.ops.decomposed import factorisation_for
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(27)
    p, lt = _problem(gen, *SHAPES[0], builtin("trunc5", bits=8), False)
    dev = torch.device("cpu")
    df = tbm.DeviceFactorisation.build(factorisation_for(lt.table, False).factorisation, dev)
    assert df.classes == [(6, 1)]
    want = get_backend("torch").conv2d_acc(p)
    real = tbm.kernels().tc_kernel
    tried = []

    class Short:
        """The tensor-core kernel on a card that fits one stage of at most two terms."""

        def __getitem__(self, grid):
            def launch(*args, num_stages=3, **kw):
                tried.append((kw["T0"], num_stages))
                if num_stages > 1 or kw["T0"] > 2:
                    raise OutOfResources(300000, 232448, "shared memory")
                return real[grid](*args, num_stages=num_stages, **kw)
            return launch

    k = tbm.kernels()
    k.tc_kernel = Short()
    s = tbm.ConvShape.of(p)
    try:
        act = tbm.activation_operand(p.qa, p.a_offset)
        cargs = tbm.column_args(p.n_a, p.n_w, s.OC, dev)
        got = tbm.run_tc_conv(act, p.qw, df, s, cargs, p.a_offset, p.w_offset)
        assert torch.equal(got, want)
        # 6 terms: stages 3, 2, 1 fail; 3 terms per launch: 3, 2, 1 fail; then 1 per launch
        assert tried[:6] == [(6, 3), (6, 2), (6, 1), (3, 3), (3, 2), (3, 1)]
        assert {t for t, _ in tried[6:]} == {1} and tried[-1] == (1, 1)
        tried.clear()
        got = tbm.run_tc_conv(act, p.qw, df, s, cargs, p.a_offset, p.w_offset)
        assert torch.equal(got, want)
        assert tried == [(1, 1)] * 6           # remembered: no failed launch the second time
    finally:
        k.tc_kernel = real
        tbm._TC_STAGES.clear()
        tbm._TC_TMAX.clear()
