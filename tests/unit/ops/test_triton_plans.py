"""Block sizes the Triton launches pick (pure Python: runs without Triton or a GPU).

``tl.arange`` needs power-of-two lengths, and a column block must divide the padded column
count; the Triton interpreter on the CPU does not check either, so it is checked here for
every column count up to 600."""

from __future__ import annotations

from axcnn.ops.triton_backend import CONFIG, _lut_plan, _tc_plan, padded_n


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def test_column_blocks_are_powers_of_two_dividing_the_padding():
    for ng in range(1, 601):
        _check_columns(ng)


def _check_columns(ng: int) -> None:
    # LUT kernels (tap and direct) and their weight preparation
    NP = padded_n(ng)
    assert NP >= ng and NP % 16 == 0, ng
    for direct in (False, True):
        cfg = CONFIG["direct" if direct else "lut"]
        BM, BN, grid, _ = _lut_plan(1000, NP, 1, 64, direct, cfg["BM"], cfg["BN"])
        assert _pow2(BN) and _pow2(BM) and NP % BN == 0 and grid[1] * BN == NP, (ng, NP, BN)
    assert _pow2(max(16, min(NP, 64)))                     # prep_lut_kernel's BN
    # tensor-core kernel and its weight preparation
    cfg = CONFIG["tc"]
    NPt, BN, BM, KP = _tc_plan(ng, 300, cfg["BM"], cfg["BN"], cfg["BK"])
    assert NPt >= ng and _pow2(BN) and NPt % BN == 0 and KP % cfg["BK"] == 0, (ng, NPt, BN)
    assert _pow2(min(NPt, 128))                            # prep_tc_kernel's BN
    # error-aware kernels take all columns in one block when there are at most 128
    NPe = padded_n(ng, 128)
    if NPe <= 128:
        assert _pow2(NPe) and NPe >= ng, (ng, NPe)
