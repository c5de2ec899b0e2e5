"""The GPU backends (``triton``, ``decomposed``, GPU ``auto``) on CUDA: bit-exact against the
torch backend (itself checked against the reference in test_ops_gpu.py) and the reference, on
odd shapes, all 12 shared EvoApprox tables and built-in 4-/8-bit tables, signed and unsigned;
gradients against the torch backend; operand histograms against the CPU recorder.

Run on a GPU machine: ``pytest -m gpu tests/unit/ops``. The shared tables are read from
``$AXCNN_SHARED_DATA`` or ``<repo>/../shared/data`` (skipped when absent).
"""

from __future__ import annotations

import pytest
import torch
from ops_problems import random_problem

from axcnn.errors import BackendUnavailable
from axcnn.lut import MultiplierLUT, builtin
from axcnn.ops import approx_conv2d, approx_matmul, get_backend
from axcnn.ops.problem import ConvGeometry, IntConvProblem
from axcnn.quant import QuantSpec, qparams_from_range, weight_qparams

HAVE_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAVE_CUDA, reason="needs CUDA")]


# odd sizes, strides, padding, dilation, groups, depthwise, 1x1, a wide layer (direct kernel
# when forced), a GEMM-like layer with K > 256
SHAPES = [
    (3, 7, 11, 13, 19, (3, 3), (2, 2), (1, 1), (1, 1), 1),
    (2, 16, 9, 9, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (2, 6, 10, 7, 10, (2, 3), (1, 2), (1, 2), (1, 1), 2),
    (1, 5, 12, 12, 7, (3, 3), (1, 1), (2, 2), (2, 2), 1),
    (4, 9, 7, 7, 5, (1, 1), (2, 3), (0, 0), (1, 1), 1),
    (2, 8, 9, 9, 8, (3, 3), (1, 1), (1, 1), (1, 1), 8),      # depthwise
    (2, 3, 8, 8, 9, (3, 3), (2, 2), (1, 1), (1, 1), 3),      # channel multiplier 3
    (1, 40, 6, 6, 130, (3, 3), (1, 1), (1, 1), (1, 1), 1),   # K = 360, N > 128
    (2, 12, 8, 8, 48, (3, 3), (1, 1), (1, 1), (1, 1), 1),    # N = 48: padded to a power of two
    (1, 16, 6, 6, 96, (3, 3), (1, 1), (1, 1), (1, 1), 1),    # N = 96: tensor-core block of 128
]
DEV = "cuda"


def problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, with_grads=False):
    return random_problem(gen, B, C, H, W, OC, k, stride, pad, dil, groups, lut, device=DEV,
                          with_grads=with_grads)


def _backends():
    return [get_backend("triton", DEV), get_backend("decomposed", DEV), get_backend("auto", DEV)]


def _check_forward(lut, gen, shapes=SHAPES):
    ref = get_backend("torch", DEV)
    for shape in shapes:
        p, _ = problem(gen, *shape, lut)
        want = ref.conv2d_acc(p)
        for impl in _backends():
            try:
                got = impl.conv2d_acc(p)
            except BackendUnavailable:
                assert impl.kind.value == "decomposed"   # no cheap exact factorisation
                continue
            assert got.dtype == torch.int64 and torch.equal(got, want), (impl.kind, lut.name, shape)


def test_auto_on_cuda_is_the_gpu_dispatcher():
    impl = get_backend("auto", DEV)
    assert type(impl).__name__ == "AutoGPUBackend"
    with pytest.raises(BackendUnavailable):
        get_backend("triton", "cpu")


def test_shared_tables_bit_exact(evoapprox_name, evoapprox):
    table, info = evoapprox[evoapprox_name]
    lut = MultiplierLUT(table, signed=bool(info["signed"]), name=evoapprox_name)
    _check_forward(lut, torch.Generator().manual_seed(len(evoapprox_name)))


@pytest.mark.parametrize("lut_name,bits,signed", [
    ("drum4", 8, False), ("mitchell", 8, True), ("trunc6", 8, True), ("exact", 8, False),
    ("mitchell", 4, False), ("trunc3", 4, True), ("drum3", 4, False), ("exact", 4, True),
    ("bam1_2", 6, False),
])
def test_builtin_tables_bit_exact(lut_name, bits, signed):
    _check_forward(builtin(lut_name, bits=bits, signed=signed), torch.Generator().manual_seed(bits))


def test_direct_kernel_and_exact_products():
    import axcnn.ops.triton_backend as tbm

    gen = torch.Generator().manual_seed(1)
    ref = get_backend("torch", DEV)
    tri = get_backend("triton", DEV)
    for signed in (False, True):
        lut = builtin("drum4", bits=8, signed=signed)
        for shape in SHAPES:
            p, _ = problem(gen, *shape, lut)
            want = ref.conv2d_acc(p)
            tbm.FORCE_MODE = "direct"
            try:
                assert torch.equal(tri.conv2d_acc(p), want), shape
            finally:
                tbm.FORCE_MODE = None
            old = tbm.TAP_TABLE_MAX
            tbm.TAP_TABLE_MAX = 1          # per-tap tables in chunks of output channels
            try:
                assert torch.equal(tri.conv2d_acc(p), want), shape
            finally:
                tbm.TAP_TABLE_MAX = old
            p.table = None
            want = ref.conv2d_acc(p)
            for impl in _backends():
                assert torch.equal(impl.conv2d_acc(p), want), (impl.kind, shape)


def test_reference_on_a_small_shape():
    gen = torch.Generator().manual_seed(2)
    for lut in (builtin("mitchell", bits=8), builtin("trunc5", bits=8, signed=True)):
        p, _ = problem(gen, 2, 3, 5, 6, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, lut)
        cpu = IntConvProblem(p.qa.cpu(), p.qw.cpu(), p.n_a, p.n_w.cpu(), p.geometry,
                             p.table.cpu(), p.a_offset, p.w_offset)
        want = get_backend("reference").conv2d_acc(cpu)
        for impl in _backends():
            try:
                got = impl.conv2d_acc(p)
            except BackendUnavailable:
                assert impl.kind.value == "decomposed"
                continue
            assert torch.equal(got.cpu(), want)


def test_fused_dequant_is_bit_identical():
    from axcnn.ops.functional import _dequant_acc

    gen = torch.Generator().manual_seed(3)
    ref = get_backend("torch", DEV)
    for lut in (builtin("drum4", bits=8), builtin("trunc5", bits=8, signed=True)):
        for shape in SHAPES:
            p, _ = problem(gen, *shape, lut)
            OC = shape[4]
            s_a = torch.tensor(0.0173, device=DEV)
            s_w = (torch.rand(OC, generator=gen) * 0.01 + 1e-3).to(DEV)
            bias = torch.randn(OC, generator=gen).to(DEV)
            want = _dequant_acc(ref.conv2d_acc(p), s_a, s_w) + bias.view(1, -1, 1, 1)
            for impl in _backends():
                got = impl.conv2d_dequant(p, s_a, s_w, bias)
                assert torch.equal(got, want), (impl.kind, shape)


@pytest.mark.parametrize("signed", [False, True])
def test_matmul_bit_exact(signed):
    gen = torch.Generator().manual_seed(4)
    luts = [builtin("drum4", bits=8, signed=signed), builtin("trunc3", bits=4, signed=signed),
            builtin("mitchell", bits=8, signed=signed)]
    for lut in luts:
        lo = -(1 << (lut.a_bits - 1)) if signed else 0
        for M, K, N in [(3, 7, 5), (300, 37, 9), (64, 3000, 3), (129, 520, 200)]:
            a = torch.randint(lo, lo + (1 << lut.a_bits), (M, K), generator=gen).to(DEV)
            w = torch.randint(lo, lo + (1 << lut.w_bits), (K, N), generator=gen).to(DEV)
            want = approx_matmul(a, w, lut, backend="torch")
            for backend in ("triton", "decomposed", "auto"):
                try:
                    got = approx_matmul(a, w, lut, backend=backend)
                except BackendUnavailable:
                    assert backend == "decomposed"
                    continue
                assert torch.equal(got, want), (backend, lut.name, M, K, N)


def _layer_run(backend, lut, grad_rule, signed, groups=1, per_channel=False, bits=8, oc=12,
               window=2):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, 6, 11, 9, generator=g) * 3 - 1
    w = torch.randn(oc, 6 // groups, 3, 3, generator=g) * 0.3
    b = torch.randn(oc, generator=g)
    spec = QuantSpec(bits, bits, signed, per_channel)
    a_q = tuple(t.to(DEV) for t in qparams_from_range(x.min(), x.max(), bits, signed))
    w_q = tuple(t.to(DEV) for t in weight_qparams(w, bits, signed, per_channel))
    xx = x.to(DEV).requires_grad_(True)
    ww = w.to(DEV).requires_grad_(True)
    y = approx_conv2d(xx, ww, b.to(DEV), 2, 1, 1, groups, spec=spec, lut=lut, a_qparams=a_q,
                      w_qparams=w_q, grad_rule=grad_rule, backend=backend, window=window)
    gy = torch.randn(y.shape, generator=g).to(DEV)
    y.backward(gy)
    return y.detach(), xx.grad, ww.grad


@pytest.mark.parametrize("lut_name,signed,groups,per_channel,oc,window", [
    ("drum4", False, 1, False, 12, 2), ("trunc6", True, 2, True, 12, 2),
    ("mitchell", False, 1, True, 12, 2), ("mitchell", True, 6, False, 12, 2),
    ("drum4", False, 1, False, 48, 2), ("trunc6", True, 2, False, 96, 2),  # columns not a power of two
    ("drum4", False, 1, False, 64, 16),
    ("drum4", False, 1, False, 12, 128),    # numerators beyond int16: float32 gradient tables
])
def test_gradients_match_torch_backend(lut_name, signed, groups, per_channel, oc, window):
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        lut = builtin(lut_name, bits=8, signed=signed)
        for rule in ("ste", "error_aware"):
            want = _layer_run("torch", lut, rule, signed, groups, per_channel, oc=oc, window=window)
            for backend in ("triton", "decomposed", "auto"):
                try:
                    got = _layer_run(backend, lut, rule, signed, groups, per_channel, oc=oc,
                                     window=window)
                except BackendUnavailable:
                    assert backend == "decomposed" and lut_name == "mitchell"
                    continue
                assert torch.equal(got[0], want[0]), (backend, rule)
                for a, b in zip(got[1:], want[1:]):
                    scale = b.abs().max().item()
                    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale), (backend, rule)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


@pytest.mark.parametrize("bits,signed", [(8, False), (8, True), (4, False), (4, True)])
def test_histograms_equal_cpu_recorder(bits, signed):
    """The operand histogram on CUDA (scatter-add with atomics, float64 products) equals the
    CPU one on the same codes (same inputs: a model run on both devices may quantize
    differently)."""
    from axcnn.nn.stats import operand_histogram

    gen = torch.Generator().manual_seed(bits)
    lo = -(1 << (bits - 1)) if signed else 0
    for (B, C, H, W, OC, k, st, pd, dl, G) in SHAPES:
        qa = torch.randint(lo, lo + (1 << bits), (B, C, H, W), generator=gen).float()
        qw = torch.randint(lo, lo + (1 << bits), (OC, C // G, *k), generator=gen).float()
        n_a = 0.0 if signed else -float(torch.randint(0, 1 << (bits - 1), (), generator=gen))
        geo = ConvGeometry(st, pd, dl, G)
        want = operand_histogram(qa, qw, geo, bits, bits, signed, n_a)
        got = operand_histogram(qa.to(DEV), qw.to(DEV), geo, bits, bits, signed, n_a)
        assert got.is_cuda and torch.equal(got.cpu(), want), (B, C, H, W, OC, k, G)


@pytest.mark.parametrize("fold", [False, True], ids=["lazy", "folded"])
def test_recorder_on_a_cuda_model(monkeypatch, fold):
    """Two batches recorded on CUDA (position counts kept, or folded into tap counts after each
    batch) give the sum of the two batches recorded one at a time, with every multiplication
    counted."""
    import axcnn.nn.stats as stats
    from axcnn.models import create_model
    from axcnn.nn import record_operands
    from axcnn.nn.convert import ConversionPlan, convert_
    from axcnn.nn.layers import Mode
    from axcnn.quant import calibrate

    xs = [torch.rand(4, 3, 32, 32, device=DEV) for _ in range(2)]
    torch.manual_seed(0)
    model = create_model("resnet8")
    convert_(model, ConversionPlan(mode=Mode.QUANTIZED))
    model = model.to(DEV).eval()
    calibrate(model, xs)
    single = []
    with torch.no_grad():
        for x in xs:
            with record_operands(model) as r:
                model(x)
            single.append(r.histograms)
        if fold:
            monkeypatch.setattr(stats, "MAX_POSITION_BYTES", 0)
        with record_operands(model) as rec:
            for x in xs:
                model(x)
    got = rec.histograms
    assert got and set(got) == set(single[0])
    for name, h in got.items():
        assert h.is_cuda and h.dtype == torch.int64, name
        assert torch.equal(h, single[0][name] + single[1][name]), name
        assert int(h.sum()) == 2 * int(single[0][name].sum()) > 0, name


def test_model_forward_all_backends_equal():
    from axcnn.models import create_model
    from axcnn.nn.convert import ConversionPlan, convert_
    from axcnn.nn.layers import Mode
    from axcnn.quant import calibrate

    x = torch.rand(8, 3, 32, 32, device=DEV)
    outs = {}
    for backend in ("torch", "triton", "decomposed", "auto"):
        torch.manual_seed(0)
        model = create_model("resnet8")
        lut = builtin("trunc5", bits=8)
        convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut=lut, backend=backend))
        model = model.to(DEV).eval()
        calibrate(model, [x])
        with torch.no_grad():
            outs[backend] = model(x)
    for backend in ("triton", "decomposed", "auto"):
        # equal conv outputs in another memory layout would make BatchNorm / pooling sum in
        # another order: every backend returns contiguous NCHW
        assert torch.equal(outs[backend], outs["torch"]), backend


@pytest.mark.parametrize("a_index", [False, True])
def test_weight_cache_and_activation_layouts(a_index):
    """Per problem, three calls (the third reuses the cached weight side) equal the torch
    backend, also with new zero points / scales on the cached weights, channels-last codes and
    after an in-place change of the weights (rebuilt); ``a_index`` switches every kernel kind
    between reading the float codes in place and the uint8 index pass."""
    import axcnn.ops.triton_backend as tbm
    from axcnn.ops.functional import _dequant_acc

    gen = torch.Generator().manual_seed(6)
    ref = get_backend("torch", DEV)
    saved = {k: tbm.CONFIG[k]["a_index"] for k in ("lut", "dw", "tc")}
    tri = get_backend("triton", DEV)
    hits0 = tri.weight_cache.hits
    try:
        for k in saved:
            tbm.CONFIG[k]["a_index"] = a_index
        for lut in (builtin("trunc5", bits=8), builtin("drum4", bits=8, signed=True), None):
            for shape in SHAPES:
                p, _ = problem(gen, *shape, lut or builtin("exact", bits=8))
                if lut is None:
                    p.table = None
                want = ref.conv2d_acc(p)
                for impl in _backends():
                    for _ in range(3):
                        assert torch.equal(impl.conv2d_acc(p), want), (impl.kind, shape)
                p.qa = p.qa.contiguous(memory_format=torch.channels_last)
                OC = shape[4]
                if p.n_a:
                    p.n_a = p.n_a - 3.0
                    p.n_w = -torch.randint(0, 200, (OC,), generator=gen).float().to(DEV)
                want = ref.conv2d_acc(p)
                s_a = torch.tensor(0.0173, device=DEV)
                s_w = (torch.rand(OC, generator=gen) * 0.01 + 1e-3).to(DEV)
                bias = torch.randn(OC, generator=gen).to(DEV)
                want_f = _dequant_acc(want, s_a, s_w) + bias.view(1, -1, 1, 1)
                for impl in _backends():
                    assert torch.equal(impl.conv2d_acc(p), want), (impl.kind, shape)
                    assert torch.equal(impl.conv2d_dequant(p, s_a, s_w, bias), want_f)
                p.qw[0].fill_(3.0)
                want = ref.conv2d_acc(p)
                for impl in _backends():
                    for _ in range(3):
                        assert torch.equal(impl.conv2d_acc(p), want), (impl.kind, shape)
    finally:
        for k, v in saved.items():
            tbm.CONFIG[k]["a_index"] = v
    assert tri.weight_cache.hits > hits0


def test_gemm_weight_cache():
    gen = torch.Generator().manual_seed(7)
    for lut in (builtin("drum4", bits=8), builtin("trunc3", bits=4)):
        from axcnn.ops import LUTTensors

        table = LUTTensors.from_lut(lut, DEV).table
        R = 1 << lut.a_bits
        a = torch.randint(0, R, (2, 300, 37), generator=gen).to(DEV).permute(1, 0, 2)
        w = torch.randint(0, R, (2, 37, 70), generator=gen).to(DEV)
        want = get_backend("torch", DEV).lut_gemm(a, w, table)
        for backend in ("triton", "decomposed"):
            impl = get_backend(backend, DEV)
            for _ in range(3):
                assert torch.equal(impl.lut_gemm(a, w, table), want), (backend, lut.name)
