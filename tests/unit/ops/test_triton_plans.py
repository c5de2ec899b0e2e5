"""Block sizes the Triton launches pick (pure Python: runs without Triton or a GPU).

``tl.arange`` needs power-of-two lengths, and a column block must divide the padded column
count; the Triton interpreter on the CPU does not check either, so it is checked here for
every column count up to 600."""

from __future__ import annotations

from axcnn.ops.triton_backend import (CONFIG, _lut_plan, _tc_plan, padded_n, tc_map_blocks,
                                      tc_prep_blocks)


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
        assert grid[0] * BM >= 1000
    assert _pow2(max(16, min(NP, 64)))                     # prep_lut_kernel's BN
    # tensor-core kernel and its weight preparation
    cfg = CONFIG["tc"]
    NPt, BN, BM, KP = _tc_plan(ng, 5, cfg["BM"], cfg["BN"], cfg["BK"])
    assert NPt >= ng and _pow2(BN) and NPt % BN == 0 and KP % cfg["BK"] == 0, (ng, NPt, BN)
    for G in (1, 4):
        RB, BNp = tc_prep_blocks(KP, NPt, G, 264)                 # prep_tc_kernel's blocks
        assert _pow2(RB) and _pow2(BNp) and KP % RB == 0 and NPt % BNp == 0, (ng, RB, BNp)
    # error-aware kernels take all columns in one block when there are at most 128
    NPe = padded_n(ng, 128)
    if NPe <= 128:
        assert _pow2(NPe) and NPe >= ng, (ng, NPe)


def test_tensor_core_weight_prep_fills_the_card():
    # ResNet 64-64@8: KP = 9 taps x 64 rows, 64 columns: 18 programs of 32 x 64 -> 144 of 16 x 16
    assert tc_prep_blocks(576, 64, 1, 264) == (16, 16)
    assert tc_prep_blocks(576, 64, 1, 0) == (32, 64)
    # vgg 512-512: 4608 rows x 512 columns already make 1152 programs
    assert tc_prep_blocks(4608, 512, 1, 264) == (32, 64)


def test_tensor_core_map_blocks():
    for cg in range(1, 700):
        for pixels in (1, 4096, 25600, 10 ** 6):
            BP, BC, _ = tc_map_blocks(pixels, cg, 132)
            assert _pow2(BP) and _pow2(BC) and BP * BC == 2048 and BC >= min(cg, 32), (cg, BC)
    assert tc_map_blocks(256 * 10 * 10, 64, 132) == (64, 32, True)     # ResNet 64-64@8
    assert tc_map_blocks(256 * 4 * 4, 512, 132) == (32, 64, True)      # VGG 512-512@2
    assert tc_map_blocks(256 * 34 * 34, 3, 132) == (512, 4, False)     # the 3-channel stem


def test_tensor_core_splits():
    from axcnn.ops.triton_backend import tc_splits

    assert tc_splits(264, 72, 132) == 1            # the grid fills the card twice: no split
    assert tc_splits(256, 9, 132) == 1             # ResNet 64-64@8 (one full wave): no split
    assert tc_splits(131, 72, 132) == 3            # one CTA short of a wave: split
    assert tc_splits(500, 9, 132) == 1
    assert tc_splits(10, 6, 132) == 1              # too few K tiles to split
    assert tc_splits(32, 72, 132) == 9             # vgg 512-512@2: 32 CTAs -> 288
    assert tc_splits(1, 9, 132) == 2               # at least 4 K tiles per split
    for ctas in range(1, 300):
        for n_kt in range(1, 80):
            S = tc_splits(ctas, n_kt, 132)
            assert S >= 1 and (S == 1 or n_kt // S >= 4), (ctas, n_kt, S)


def test_tensor_core_launches_and_stages():
    from axcnn.ops.triton_backend import tc_launches, tc_stages, tc_term_bytes

    assert tc_launches([], 8) == [[]]
    assert tc_launches([(5, 1)], 13) == [[(5, 1)]]
    # more than four classes: a new launch after four
    six = [(1, s) for s in range(1, 7)]
    assert tc_launches(six, 13) == [six[:4], six[4:]]
    # a class larger than the term limit is split; the pieces keep their scale
    assert tc_launches([(3, 2), (4, 5)], 3) == [[(3, 2)], [(3, 5)], [(1, 5)]]
    assert tc_launches([(10, 1)], 1) == [[(1, 1)]] * 10
    for launch in tc_launches([(7, 1), (2, 3), (9, 4)], 5):
        assert 0 < sum(c for c, _ in launch) <= 5 and len(launch) <= 4
    # H100 (227 KiB): five terms of 128x128 tiles with BK 64 pipeline in 3 stages, not 4
    # (measured: 4 stages asked for 232 KiB); one term keeps the configured stages
    tb = tc_term_bytes(128, 128, 64)
    assert tc_stages(5, tb, 232448, 4) == 3
    assert tc_stages(1, tb, 232448, 3) == 3
    assert tc_stages(13, tb, 232448, 3) == 2 and tc_stages(14, tb, 232448, 3) == 1
    assert all(tc_stages(t, tb, 101376, 4) >= 1 for t in range(1, 8))
