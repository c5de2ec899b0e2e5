"""approx_matmul: torch backend vs the reference and a numpy int64 oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from axcnn.errors import ConfigError, LUTError
from axcnn.lut import MultiplierLUT, builtin, exact_table
from axcnn.ops import Backend, LUTTensors, approx_matmul
from axcnn.ops import torch_backend

BUILTINS = [
    ("drum4", 8, False), ("mitchell", 8, True), ("trunc6", 8, False), ("bam2_6", 8, True),
    ("trunc3", 4, False), ("bam1_2", 4, True), ("drum3", 4, False), ("exact", 4, True),
]
# (M, K, N): odd sizes; M*4 < R takes the direct gather path, larger M the embedding bag
SHAPES = [(1, 1, 1), (3, 5, 7), (13, 9, 11), (70, 9, 5), (2, 33, 3)]


def random_codes(shape, bits, signed, gen):
    lo = -(1 << (bits - 1)) if signed else 0
    return torch.randint(lo, lo + (1 << bits), shape, generator=gen, dtype=torch.int64)


def numpy_matmul(a: torch.Tensor, w: torch.Tensor, lut: MultiplierLUT) -> np.ndarray:
    """out[m, n] = sum_k LUT[a[m, k], w[k, n]] in int64, straight from the table."""
    t = lut.table.astype(np.int64)
    ai = a.numpy() + lut.a_offset
    wi = w.numpy() + lut.w_offset
    return t[ai[:, :, None], wi[None, :, :]].sum(axis=1)


@pytest.mark.parametrize("name,bits,signed", BUILTINS)
def test_torch_equals_reference_and_numpy(name, bits, signed, path_spy):
    lut = builtin(name, bits=bits, signed=signed)
    gen = torch.Generator().manual_seed(bits * 7 + signed)
    for M, K, N in SHAPES:
        a = random_codes((M, K), bits, signed, gen)
        w = random_codes((K, N), bits, signed, gen)
        out_t = approx_matmul(a, w, lut, backend="torch")
        out_r = approx_matmul(a, w, lut, backend=Backend.REFERENCE)
        assert out_t.dtype == torch.int64 and out_t.shape == (M, N)
        assert torch.equal(out_t, out_r), (name, M, K, N)
        assert np.array_equal(out_t.numpy(), numpy_matmul(a, w, lut))
    assert path_spy["gather"] > 0 and path_spy["bag"] > 0


@pytest.mark.parametrize("signed", [False, True])
def test_exact_lut_equals_integer_matmul(signed):
    lut = builtin("exact", bits=8, signed=signed)
    gen = torch.Generator().manual_seed(5)
    for M, K, N in [(3, 17, 4), (100, 31, 6)]:
        a = random_codes((M, K), 8, signed, gen)
        w = random_codes((K, N), 8, signed, gen)
        assert torch.equal(approx_matmul(a, w, lut, backend="torch"), a @ w)


def test_mixed_width_lut():
    lut = builtin("drum3", bits=4, w_bits=8)
    gen = torch.Generator().manual_seed(9)
    a = random_codes((20, 7), 4, False, gen)
    w = random_codes((7, 5), 8, False, gen)
    out = approx_matmul(a, w, lut, backend="torch")
    assert np.array_equal(out.numpy(), numpy_matmul(a, w, lut))
    assert torch.equal(out, approx_matmul(a, w, lut, backend="reference"))


def test_evoapprox_tables(evoapprox, evoapprox_name, path_spy):
    table, info = evoapprox[evoapprox_name]
    lut = MultiplierLUT(table, signed=info["signed"], name=evoapprox_name)
    gen = torch.Generator().manual_seed(11)
    for M, K, N in [(5, 12, 6), (90, 27, 8)]:
        a = random_codes((M, K), 8, lut.signed, gen)
        w = random_codes((K, N), 8, lut.signed, gen)
        out = approx_matmul(a, w, lut, backend="torch")
        assert np.array_equal(out.numpy(), numpy_matmul(a, w, lut)), (M, K, N)
    a = random_codes((4, 6), 8, lut.signed, gen)
    w = random_codes((6, 3), 8, lut.signed, gen)
    assert torch.equal(approx_matmul(a, w, lut, backend="torch"),
                       approx_matmul(a, w, lut, backend="reference"))
    assert path_spy["gather"] > 0 and path_spy["bag"] > 0


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("split", ["chunks", "digits"])
def test_large_values_and_large_k_stay_exact(signed, split, monkeypatch, path_spy):
    """K * max|LUT| far above 2^24: float32 sums alone would round; the passes over chunks of
    K (or, forced, the digit split of the table) must not."""
    rng = np.random.default_rng(3 + signed)
    if signed:
        t = rng.choice([-32768, -32767, 32767, 32766, 32000, -31000], size=(256, 256))
    else:
        t = rng.choice([0, 1, 3, 65535, 65534, 65533, 60001], size=(256, 256))
    lut = MultiplierLUT(t, signed=signed, name="big")
    if split == "digits":
        monkeypatch.setattr(torch_backend, "MIN_CHUNK_TAPS", 10 ** 9)
    passes = []
    exact_passes = torch_backend._exact_passes

    def spy(tp, K, maxv):
        out = exact_passes(tp, K, maxv)
        passes.append(out)
        return out

    monkeypatch.setattr(torch_backend, "_exact_passes", spy)
    gen = torch.Generator().manual_seed(21)
    K = 3000
    for M in (64, 7):   # embedding bag and direct gather
        a = random_codes((M, K), 8, signed, gen)
        w = random_codes((K, 3), 8, signed, gen)
        out = approx_matmul(a, w, lut, backend="torch")
        expect = numpy_matmul(a, w, lut)
        assert np.array_equal(out.numpy(), expect)
        if M == 64:
            a_bag, w_bag = a, w
    # one output column per table chunk: the K chunks' bag columns serve every column chunk
    monkeypatch.setattr(torch_backend, "CHUNK_ELEMS", K * 256)
    out = approx_matmul(a_bag, w_bag, lut, backend="torch")
    assert np.array_equal(out.numpy(), numpy_matmul(a_bag, w_bag, lut))
    # partial sums of the shifted (non-negative) table reach far beyond float32's exact range
    assert K * int(t.max() - t.min()) > 8 * 2**24
    assert passes and all(len(p) > 1 for p in passes)
    for p in passes:
        if split == "chunks":        # each tap once, the table as it is
            assert [k0 for k0, _, _, _ in p][0] == 0 and p[-1][1] == K
            assert all(b == c for (_, b, _, _), (c, _, _, _) in zip(p, p[1:]))
            assert all(mult == 1 for *_, mult in p)
        else:                        # every tap in every digit pass
            assert all((k0, k1) == (0, K) for k0, k1, _, _ in p)


def test_lut_tensors_are_accepted():
    lut = builtin("drum4", bits=8, signed=True)
    lt = LUTTensors.from_lut(lut)
    gen = torch.Generator().manual_seed(2)
    a = random_codes((10, 4), 8, True, gen)
    w = random_codes((4, 3), 8, True, gen)
    assert torch.equal(approx_matmul(a, w, lt), approx_matmul(a, w, lut))


def test_int32_and_uint8_codes():
    lut = builtin("trunc4", bits=8)
    gen = torch.Generator().manual_seed(4)
    a = random_codes((9, 5), 8, False, gen)
    w = random_codes((5, 2), 8, False, gen)
    ref = approx_matmul(a, w, lut)
    assert torch.equal(approx_matmul(a.to(torch.uint8), w.to(torch.int32), lut), ref)


@pytest.mark.parametrize("signed,bad", [(False, -1), (False, 16), (True, 8), (True, -9)])
def test_codes_out_of_range(signed, bad):
    lut = builtin("exact", bits=4, signed=signed)
    ok = torch.zeros((2, 3), dtype=torch.int64)
    badt = ok.clone()
    badt[1, 2] = bad
    with pytest.raises(LUTError, match="outside"):
        approx_matmul(badt, ok.T.contiguous(), lut)
    with pytest.raises(LUTError, match="weight"):
        approx_matmul(ok, badt.T.contiguous(), lut)


def test_float_inputs_and_bad_shapes():
    lut = builtin("exact", bits=4)
    with pytest.raises(ConfigError, match="integer"):
        approx_matmul(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.int64), lut)
    with pytest.raises(ConfigError):
        approx_matmul(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.float64), lut)
    with pytest.raises(ConfigError):
        approx_matmul(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(4, 2, dtype=torch.int64), lut)
    with pytest.raises(ConfigError):
        approx_matmul(torch.zeros(3, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64), lut)


def test_empty_k_and_m():
    lut = builtin("drum4", bits=8)
    z = approx_matmul(torch.zeros(4, 0, dtype=torch.int64), torch.zeros(0, 3, dtype=torch.int64), lut)
    assert z.shape == (4, 3) and not z.any()
    e = approx_matmul(torch.zeros(0, 5, dtype=torch.int64), torch.zeros(5, 3, dtype=torch.int64), lut)
    assert e.shape == (0, 3)


def test_exact_table_helper_sanity():
    # guard the oracle itself
    lut = MultiplierLUT(exact_table(4, 4, True), signed=True)
    a = torch.tensor([[-8, 7]])
    w = torch.tensor([[-8], [3]])
    assert numpy_matmul(a, w, lut).tolist() == [[64 + 21]]
