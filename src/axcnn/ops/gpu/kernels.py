"""Triton kernels of the GPU backends (imported only where Triton is installed).

Activations. The forward kernels read activations through four element strides
(``a_sb, a_sc, a_sh, a_sw`` for batch, channel, row, column), so they take either the float
activation codes as they come (NCHW, channels-last or any other layout; ``x_off`` = the table
offset of the codes) or the uint8 NHWC table indices of :func:`nhwc_index_kernel`
(``x_off`` = 0). The table index of a value x is ``(x + x_off) mod 256`` (exactly what the
uint8 index pass stores). The im2col happens inside the kernels ("implicit GEMM"): output row
m = (b, oy, ox), tap k = (ky, kx, c) in that order, and the per-tap tables ``koff`` (element
offset of the tap relative to the window origin, built from the same strides), ``kdy``,
``kdx`` (its row/column displacement) give each tap's address and bounds check. Taps that fall
into the padding read ``pad_idx = a_off - n_a``, the index of the code of real zero; n_a is
read from a one-element int64 tensor (no host value, no recompilation per zero point).

Weights. Everything the kernels need from the weights is built by one *prep* launch per
weight tensor (``prep_lut_kernel`` / ``prep_tc_kernel``), which the backends cache across
calls for inference: the weight-side tables plus two int64 column vectors,
``colw[n] = cconst + sum_k beta(w[k, n])`` and ``wsum[n] = sum_k w[k, n]`` (codes). Nothing
that changes per call (zero points, scales, bias) is in them.

Epilogue (:func:`_epilogue_store`, shared by all forward kernels): the exact zero-point cross
terms of :mod:`axcnn.ops.problem`,

    acc[m, n] += (sum_k code(a[m, k])) * n_w[n] + colw[n] + n_a * wsum[n] + K * n_a * n_w[n]

then either int64 accumulators or, fused (``DEQUANT``), float32(float64(acc) *
(float64(s_a) * float64(s_w[n]))) (+ bias[n]) -- the same IEEE operations as the unfused
dequantisation, so the output is identical. ``n_w`` and ``s_w`` are read with a stride (0 for
a scalar or an expanded view).

Kernels:
- ``nhwc_index_kernel``: float codes NCHW -> uint8 indices NHWC (one pass; the error-aware
  gradients read these, the forward kernels with ``a_index``).
- ``lut_kernel``: CUDA-core LUT GEMM, int32 accumulators. ``DIRECT=False``: per-tap tables
  T[g, k, v, n] = LUT[v, w[g, k, n]] - mid (int16, built by ``prep_lut_kernel``), so every
  (row, tap) reads one contiguous row of T (vector loads, no bank conflicts); ``DIRECT=True``:
  gathers LUT[a, w] (int16, L1-resident) for problems whose per-tap tables would not fit.
- ``dw_kernel``: depthwise / channel-multiplier convolutions (one input channel per group).
- ``tc_map_kernel`` + ``tc_kernel``: sum_t s_t U_t(A) @ V_t(W) on int8 tensor cores
  (``tl.dot`` int8 -> int32), plus the row function alpha: the decomposed backend's kernel.
  The map pass writes U_t(a) (int8) of the zero-padded input in NHWC order and per-pixel
  sums of the codes and of alpha(a); the main kernel's K tiles are channel runs of one tap,
  read as contiguous bytes without masks, against K-major int8 weight tiles. Terms are
  grouped in up to four scale classes (own accumulators). ``tc_split_sum_kernel`` sums the
  partials of a launch split along K (and dequantises).
- ``prep_lut_kernel`` / ``prep_tc_kernel``: the weight-side operands (per-tap tables, uint8
  weight indices or the int8 maps V_t(W)) and the column vectors, in one launch.
- ``ea_gx_kernel`` / ``ea_gw_kernel``: error-aware gradients through per-tap tables of the
  gradient tables' int16 numerators (or float32 values; one contiguous row per (activation
  index, tap), like ``lut_kernel``); the input gradient is computed per input pixel over the
  taps that read it (no col2im), the weight gradient for a block of taps with one reduction.
"""

from __future__ import annotations

import triton
import triton.language as tl

# --------------------------------------------------------------------------------------------
# shared device helpers (inlined by the compiler)


@triton.jit
def _rows(rm, OH, OW, SH, SW, PH, PW):
    """Output rows m = (b, oy, ox) -> (b, l = oy*OW + ox, top row, left column of the window)."""
    L = OH * OW
    b = rm // L
    lpos = rm % L
    return b, lpos, (lpos // OW) * SH - PH, (lpos % OW) * SW - PW


@triton.jit
def _inside(mask, ih, iw, H, W):
    """``mask`` and (ih, iw) inside the H x W input (not in the padding)."""
    return mask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)


@triton.jit
def _window_base(b, ih0, iw0, c0, a_sb, a_sc, a_sh, a_sw, A64: tl.constexpr):
    """Element offset of (b, c0, ih0, iw0) (int64 when the activations span >= 2^31 elements)."""
    if A64:
        b = b.to(tl.int64)
    return b * a_sb + c0 * a_sc + ih0 * a_sh + iw0 * a_sw


@triton.jit
def _act_index(a_ptr, addr, ok, x_off, pad_idx, CODES: tl.constexpr):
    """Table indices (int32) of the activations at ``addr`` where ``ok``, ``pad_idx`` elsewhere
    (padding taps, rows/columns outside the problem). CODES: the values are codes (float or
    integer), index = (x + x_off) mod 256 (the padding value x = pad_idx - x_off maps to
    pad_idx); else they are uint8 indices (x_off is 0)."""
    if CODES:
        x = tl.load(a_ptr + addr, mask=ok, other=pad_idx - x_off)
        return (x + x_off).to(tl.int32) & 255
    else:
        return tl.load(a_ptr + addr, mask=ok, other=pad_idx).to(tl.int32)


@triton.jit
def _epilogue_store(res, asum, b, lpos, mmask, cidx, col, cmask, K, na,
                    colw_ptr, wsum_ptr, nw_ptr, nw_st, sa_ptr, sw_ptr, sw_st, bias_ptr,
                    out_ptr, out_sb, out_sn, out_sl,
                    COLS: tl.constexpr, DEQUANT: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Add the column terms (``COLS``) to the int64 tile ``res`` and store it (int64) or its
    fused dequantisation (float32).

    asum: int64 code sums of the rows, broadcastable to ``res`` ([BM, 1] or [BM, BN]);
    cidx: column index into the padded colw / wsum vectors; col: output channel (index into
    n_w, s_w, bias and the output); cmask: valid columns."""
    if COLS:
        nw = tl.load(nw_ptr + col * nw_st, mask=cmask, other=0.0).to(tl.int64)
        colc = (tl.load(colw_ptr + cidx, mask=cmask, other=0)
                + na * tl.load(wsum_ptr + cidx, mask=cmask, other=0) + K * na * nw)
        res = res + asum * nw[None, :] + colc[None, :]
    omask = mmask[:, None] & cmask[None, :]
    optr = (out_ptr + b.to(tl.int64)[:, None] * out_sb + col.to(tl.int64)[None, :] * out_sn
            + lpos.to(tl.int64)[:, None] * out_sl)
    if DEQUANT:
        sc = tl.load(sa_ptr).to(tl.float64) * tl.load(sw_ptr + col * sw_st, mask=cmask,
                                                      other=0.0).to(tl.float64)
        y = (res.to(tl.float64) * sc[None, :]).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(bias_ptr + col, mask=cmask, other=0.0)[None, :]
        tl.store(optr, y, mask=omask)
    else:
        tl.store(optr, res, mask=omask)


@triton.jit
def _weight_index(qw_ptr, g, k, rn, nm, NG, CG, KHW, w_off):
    """int32 table indices w[g, k, rn] + w_off of the float weight codes qw (OC, CG, kh, kw),
    tap k = (ky, kx, c); 0 where not ``nm``."""
    tap = k // CG
    c = k % CG
    wq = tl.load(qw_ptr + ((g * NG + rn) * CG + c) * KHW + tap, mask=nm, other=0.0)
    return tl.where(nm, (wq + w_off).to(tl.int32), 0)


@triton.jit
def _column_sums(qw_ptr, colw_ptr, wsum_ptr, g, jb, K, NG, NP, CG, KHW, cconst,
                 CBN: tl.constexpr, BK: tl.constexpr):
    """Column block ``jb`` of group g: colw = cconst and wsum = sum_k w (codes), both int64,
    zero in the padding columns NG <= n < NP."""
    rn = jb * CBN + tl.arange(0, CBN)
    nm = rn < NG
    sw = tl.zeros((CBN,), dtype=tl.int64)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        km = rk < K
        tap = rk // CG
        c = rk % CG
        m2 = km[:, None] & nm[None, :]
        wq = tl.load(qw_ptr + ((g * NG + rn[None, :]) * CG + c[:, None]) * KHW + tap[:, None],
                     mask=m2, other=0.0)
        sw += tl.sum(wq.to(tl.int32), axis=0).to(tl.int64)
    tl.store(colw_ptr + g * NP + rn, tl.where(nm, cconst, 0), mask=rn < NP)
    tl.store(wsum_ptr + g * NP + rn, tl.where(nm, sw, 0), mask=rn < NP)


# --------------------------------------------------------------------------------------------
# activation index pass


@triton.jit
def _nhwc_block(total, C, H, W, BLOCK: tl.constexpr):
    """This program's BLOCK elements in NHWC order: (offset o, mask, b, h, w, c), int64."""
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    c = o % C
    rest = o // C
    w = rest % W
    rest = rest // W
    return o, o < total, rest // H, rest % H, w, c


@triton.jit(do_not_specialize=["total", "C", "H", "W", "off"])
def nhwc_index_kernel(x_ptr, out_ptr, total, C, H, W, off, BLOCK: tl.constexpr):
    """out[b, h, w, c] = uint8(x[b, c, h, w] + off) (x holds exact integers)."""
    o, mask, b, h, w, c = _nhwc_block(total, C, H, W, BLOCK)
    src = ((b * C + c) * H + h) * W + w
    x = tl.load(x_ptr + src, mask=mask, other=0.0)
    v = (x + off).to(tl.int32)
    tl.store(out_ptr + o, v.to(tl.uint8), mask=mask)


# --------------------------------------------------------------------------------------------
# forward kernels

#: per-call integers that are not worth a specialisation (a recompile per distinct value class)
_FWD_DNS = ("M", "K", "H", "W", "CG", "OH", "OW", "SH", "SW", "PH", "PW", "a_sb", "a_sc", "a_sh",
            "a_sw", "x_off", "a_off", "nw_st", "sw_st", "out_sb", "out_sn", "out_sl")


def _fwd_jit(fn):
    """triton.jit with the _FWD_DNS arguments of ``fn`` not specialised."""
    names = fn.__code__.co_varnames[:fn.__code__.co_argcount]
    return triton.jit(do_not_specialize=[n for n in _FWD_DNS if n in names])(fn)


@_fwd_jit
def lut_kernel(a_ptr, tab_ptr, widx_ptr, koff_ptr, kdy_ptr, kdx_ptr,
               colw_ptr, wsum_ptr, na_ptr, nw_ptr, sa_ptr, sw_ptr, bias_ptr, out_ptr,
               M, K, NG, NP, R, CW, H, W, CG, OH, OW, SH, SW, PH, PW,
               a_sb, a_sc, a_sh, a_sw, x_off, a_off, nw_st, sw_st, out_sb, out_sn, out_sl,
               BM: tl.constexpr, BN: tl.constexpr, DIRECT: tl.constexpr,
               DEQUANT: tl.constexpr, HAS_BIAS: tl.constexpr, ACC64: tl.constexpr,
               A64: tl.constexpr, CODES: tl.constexpr, UNROLL: tl.constexpr):
    """LUT conv/GEMM: acc[m, n] = sum_k T[g, k, a[m, k], n] (per-tap table ``tab_ptr``) or,
    DIRECT, sum_k LUT16[a[m, k], widx[g, k, n]] (``tab_ptr`` = LUT16, ``widx_ptr`` uint8)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    mmask = rm < M
    b, lpos, ih0, iw0 = _rows(rm, OH, OW, SH, SW, PH, PW)
    base = _window_base(b, ih0, iw0, g * CG, a_sb, a_sc, a_sh, a_sw, A64)
    na = tl.load(na_ptr)
    pad_idx = (a_off - na).to(tl.int32)
    if ACC64:
        acc = tl.zeros((BM, BN), dtype=tl.int64)
    else:
        acc = tl.zeros((BM, BN), dtype=tl.int32)
    suma = tl.zeros((BM,), dtype=tl.int32)
    if DIRECT:
        wrow = widx_ptr + g * K * NP + rn
    else:
        tbase = tab_ptr + g.to(tl.int64) * K * R * NP + rn
    for k in tl.range(0, K, loop_unroll_factor=UNROLL):
        ko = tl.load(koff_ptr + k)
        dy = tl.load(kdy_ptr + k)
        dx = tl.load(kdx_ptr + k)
        ok = _inside(mmask, ih0 + dy, iw0 + dx, H, W)
        a = _act_index(a_ptr, base + ko, ok, x_off, pad_idx, CODES)
        suma += a
        if DIRECT:
            wv = tl.load(wrow + k * NP).to(tl.int32)
            t = tl.load(tab_ptr + a[:, None] * CW + wv[None, :])
        else:
            t = tl.load(tbase + (k * R + a)[:, None] * NP)
        if ACC64:
            acc += t.to(tl.int64)
        else:
            acc += t.to(tl.int32)
    asum = suma.to(tl.int64) - K * a_off
    _epilogue_store(acc.to(tl.int64), asum[:, None], b, lpos, mmask, g * NP + rn, g * NG + rn,
                    rn < NG, K, na, colw_ptr, wsum_ptr, nw_ptr, nw_st, sa_ptr, sw_ptr, sw_st,
                    bias_ptr, out_ptr, out_sb, out_sn, out_sl, True, DEQUANT, HAS_BIAS)


@_fwd_jit
def dw_kernel(a_ptr, lut_ptr, widx_ptr, koff_ptr, kdy_ptr, kdx_ptr,
              colw_ptr, wsum_ptr, na_ptr, nw_ptr, sa_ptr, sw_ptr, bias_ptr, out_ptr,
              M, K, OC, NGM, CW, H, W, OH, OW, SH, SW, PH, PW,
              a_sb, a_sc, a_sh, a_sw, x_off, a_off, nw_st, sw_st, out_sb, out_sn, out_sl,
              BM: tl.constexpr, BO: tl.constexpr, DEQUANT: tl.constexpr,
              HAS_BIAS: tl.constexpr, A64: tl.constexpr, CODES: tl.constexpr,
              UNROLL: tl.constexpr):
    """Grouped conv with one input channel per group: output channel o reads channel o // NGM;
    widx (OC, K) uint8 weight indices, colw / wsum per output channel."""
    pid_m = tl.program_id(0)
    pid_o = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    ro = pid_o * BO + tl.arange(0, BO)
    mmask = rm < M
    omask1 = ro < OC
    cin = ro // NGM
    b, lpos, ih0, iw0 = _rows(rm, OH, OW, SH, SW, PH, PW)
    base = _window_base(b, ih0, iw0, 0, a_sb, a_sc, a_sh, a_sw, A64)
    na = tl.load(na_ptr)
    pad_idx = (a_off - na).to(tl.int32)
    acc = tl.zeros((BM, BO), dtype=tl.int32)
    suma = tl.zeros((BM, BO), dtype=tl.int32)
    for k in tl.range(0, K, loop_unroll_factor=UNROLL):
        ko = tl.load(koff_ptr + k)
        dy = tl.load(kdy_ptr + k)
        dx = tl.load(kdx_ptr + k)
        ok = _inside(mmask, ih0 + dy, iw0 + dx, H, W)
        a = _act_index(a_ptr, (base + ko)[:, None] + (cin * a_sc)[None, :],
                       ok[:, None] & omask1[None, :], x_off, pad_idx, CODES)
        suma += a
        wv = tl.load(widx_ptr + ro * K + k, mask=omask1, other=0).to(tl.int32)
        acc += tl.load(lut_ptr + a * CW + wv[None, :]).to(tl.int32)
    asum = suma.to(tl.int64) - K * a_off
    _epilogue_store(acc.to(tl.int64), asum, b, lpos, mmask, ro, ro, omask1, K, na,
                    colw_ptr, wsum_ptr, nw_ptr, nw_st, sa_ptr, sw_ptr, sw_st, bias_ptr,
                    out_ptr, out_sb, out_sn, out_sl, True, DEQUANT, HAS_BIAS)


@triton.jit(do_not_specialize=["NPIX", "H", "W", "HP", "WP", "PH", "PW", "x_off", "a_off",
                               "map_st"])
def tc_map_kernel(x_ptr, u_ptr, al_ptr, na_ptr, maps_ptr, rs_ptr, ral_ptr, NPIX, C, CG, G,
                  H, W, HP, WP, PH, PW, a_sb, a_sc, a_sh, a_sw, x_off, a_off, R, map_st,
                  T: tl.constexpr, HAS_ALPHA: tl.constexpr, CODES: tl.constexpr,
                  CH_TILES: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
    """Activation side of the tensor-core kernel, once per call. Grid (pixel blocks, G).

    For every pixel of the zero-padded input (B, HP, WP) and every channel of group g, the
    table index v (``pad_idx`` in the border) gives the int8 maps ``maps[t] = U_t[v]``, NHWC
    with plane stride ``map_st``; per padded pixel and group, ``rs`` = sum_c (v - a_off)
    (int32) and, HAS_ALPHA, ``ral`` = sum_c alpha[v] (int64), the row-function sums that the
    GEMM kernel adds up over the taps of a window. CH_TILES: tiles are (channels, pixels);
    Triton lays out each load and store along its contiguous axis, so NCHW inputs are read
    pixel-wise and the NHWC maps written channel-wise (from 32 channels up the map pass alone
    ran 10-30 % faster than with (pixels, channels) tiles, whose NCHW reads are strided, on an
    H200; whole H100 calls up to 4 %); else (pixels, channels) tiles (layers of a few
    channels: the 3-channel stem's call took 17 % longer with channel tiles on an H100)."""
    rp = tl.program_id(0).to(tl.int64) * BP + tl.arange(0, BP)
    g = tl.program_id(1)
    pm = rp < NPIX
    wp = rp % WP
    rest = rp // WP
    h = rest % HP - PH
    b = rest // HP
    w = wp - PW
    inside = pm & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    pix = b * a_sb + h * a_sh + w * a_sw
    pad_idx = (a_off - tl.load(na_ptr)).to(tl.int32)
    s1 = tl.zeros((BP,), dtype=tl.int32)
    s2 = tl.zeros((BP,), dtype=tl.int64)
    for c0 in range(0, CG, BC):
        rc = c0 + tl.arange(0, BC)
        cm = rc < CG
        c = g * CG + rc
        if CH_TILES:
            v = _act_index(x_ptr, c[:, None] * a_sc + pix[None, :],
                           cm[:, None] & inside[None, :], x_off, pad_idx, CODES)
            sm = cm[:, None] & pm[None, :]
            dst = rp[None, :] * C + c[:, None]
        else:
            v = _act_index(x_ptr, pix[:, None] + c[None, :] * a_sc,
                           inside[:, None] & cm[None, :], x_off, pad_idx, CODES)
            sm = pm[:, None] & cm[None, :]
            dst = rp[:, None] * C + c[None, :]
        for t in tl.static_range(T):
            tl.store(maps_ptr + t * map_st + dst, tl.load(u_ptr + t * R + v), mask=sm)
        s1 += tl.sum(tl.where(sm, v - a_off, 0), axis=0 if CH_TILES else 1)
        if HAS_ALPHA:
            s2 += tl.sum(tl.where(sm, tl.load(al_ptr + v), 0).to(tl.int64),
                         axis=0 if CH_TILES else 1)
    tl.store(rs_ptr + rp * G + g, s1, mask=pm)
    if HAS_ALPHA:
        tl.store(ral_ptr + rp * G + g, s2, mask=pm)


@triton.jit
def _tc_class(acc, wide, maps_ptr, map_st, addr, vk, v_st, scale, T_LO: tl.constexpr,
              T_HI: tl.constexpr, WIDE: tl.constexpr):
    """Terms T_LO <= t < T_HI (one scale class) of a K tile: acc += U_t(A) @ V_t, or, WIDE,
    wide += scale * (U_t(A) @ V_t) in int64. U_t(A) is read from the term's padded NHWC map
    (no masks: every address is inside the map, and V rows of channels a tap does not have
    are zero)."""
    for t in tl.static_range(T_LO, T_HI):
        u = tl.load(maps_ptr + map_st.to(tl.int64) * t + addr)
        v = tl.trans(tl.load(vk + t * v_st))
        if WIDE:
            wide += tl.dot(u, v, out_dtype=tl.int32).to(tl.int64) * scale
        else:
            acc = tl.dot(u, v, acc, out_dtype=tl.int32)
    return acc, wide


@triton.jit(do_not_specialize=["M", "HP", "WP", "OH", "OW", "SH", "SW", "DH", "DW",
                               "nw_st", "sw_st", "out_sb", "out_sn", "out_sl",
                               "map_st", "n_kt", "n_c"])
def tc_kernel(maps_ptr, rs_ptr, ral_ptr, v_ptr, koff_ptr,
              colw_ptr, wsum_ptr, na_ptr, nw_ptr, sa_ptr, sw_ptr, bias_ptr, out_ptr,
              s0, s1, s2, s3,
              M, K, NG, NP, KP, HP, WP, C, CG, OH, OW, SH, SW, DH, DW, KW, KHW, n_kt, n_c,
              map_st, nw_st, sw_st, v_st, v_sg, out_sb, out_sn, out_sl, kt_per, out_ss, G,
              T0: tl.constexpr, T1: tl.constexpr, T2: tl.constexpr, T3: tl.constexpr,
              HAS_ALPHA: tl.constexpr, COLS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
              BK: tl.constexpr, DEQUANT: tl.constexpr,
              HAS_BIAS: tl.constexpr, WIDE: tl.constexpr, A64: tl.constexpr,
              SPLIT: tl.constexpr, PACKED: tl.constexpr):
    """acc = sum over classes c of s_c * sum_{t in c} U_t(A) @ V_t(W)  (+ alpha row sums);
    COLS: add the column terms (only the first launch when the classes need several).
    SPLIT: grid axis 2 is (split, group); split sp sums K tiles sp*kt_per .. +kt_per and
    writes int64 partials at ``out_ptr + sp * out_ss`` (the row and column terms in split 0),
    summed by the caller.

    An implicit GEMM over the zero-padded NHWC maps of :func:`tc_map_kernel`, without masks
    in the main loop: tile kt covers channels c0 .. c0+BK of one tap (ky, kx) (``n_c`` tiles
    per tap, ``n_kt`` in all), so each row of an operand tile is BK consecutive bytes; V has
    n_c*BK rows per tap, zero beyond the tap's CG channels (the bytes read there belong to
    the next channels or pixel and are multiplied by 0). PACKED (taps with fewer channels than
    a K tile, e.g. the 3-channel stem): tile kt covers the flattened taps kt*BK .. +BK, each
    element addressed through ``koff`` (zero beyond K, where V is zero). Rows past M are
    clamped to row M-1 and not stored. The row sums of the codes and of alpha come from the
    map pass's per-pixel sums, added up over the KHW taps of each window."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    kt_lo = 0
    kt_hi = n_kt
    tap_hi = KHW
    if SPLIT:
        sp = g // G
        g = g - sp * G
        kt_lo = sp * kt_per
        kt_hi = tl.minimum(kt_lo + kt_per, n_kt)
        tap_hi = tl.where(sp == 0, KHW, 0)
        out_ptr += sp.to(tl.int64) * out_ss
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    mmask = rm < M
    b, lpos, oy0, ox0 = _rows(tl.minimum(rm, M - 1), OH, OW, SH, SW, 0, 0)
    pix = (b * HP + oy0) * WP + ox0            # window origin in the padded input
    if A64:
        pix = pix.to(tl.int64)
    prow = pix * C + g * CG
    na = tl.load(na_ptr)
    acc0 = tl.zeros((BM, BN), dtype=tl.int32)
    acc1 = tl.zeros((BM, BN), dtype=tl.int32)
    acc2 = tl.zeros((BM, BN), dtype=tl.int32)
    acc3 = tl.zeros((BM, BN), dtype=tl.int32)
    wide = tl.zeros((BM, BN), dtype=tl.int64)
    vbase = v_ptr + g * v_sg + rn[:, None] * KP
    for kt in range(kt_lo, kt_hi):
        if PACKED:
            off = tl.load(koff_ptr + kt * BK + rk)
        else:
            tap = kt // n_c
            ky = tap // KW
            kx = tap - ky * KW
            off = (ky * DH * WP + kx * DW) * C + (kt - tap * n_c) * BK + rk
        addr = prow[:, None] + off[None, :]
        vk = vbase + (kt * BK + rk)[None, :]
        acc0, wide = _tc_class(acc0, wide, maps_ptr, map_st, addr, vk, v_st, s0, 0, T0, WIDE)
        acc1, wide = _tc_class(acc1, wide, maps_ptr, map_st, addr, vk, v_st, s1,
                               T0, T0 + T1, WIDE)
        acc2, wide = _tc_class(acc2, wide, maps_ptr, map_st, addr, vk, v_st, s2,
                               T0 + T1, T0 + T1 + T2, WIDE)
        acc3, wide = _tc_class(acc3, wide, maps_ptr, map_st, addr, vk, v_st, s3,
                               T0 + T1 + T2, T0 + T1 + T2 + T3, WIDE)
    res = wide
    if T0 > 0:
        res += acc0.to(tl.int64) * s0
    if T1 > 0:
        res += acc1.to(tl.int64) * s1
    if T2 > 0:
        res += acc2.to(tl.int64) * s2
    if T3 > 0:
        res += acc3.to(tl.int64) * s3
    suma = tl.zeros((BM,), dtype=tl.int32)
    if COLS or HAS_ALPHA:
        for tap in range(0, tap_hi):
            ky = tap // KW
            q = (pix + ky * DH * WP + (tap - ky * KW) * DW) * G + g
            if COLS:
                suma += tl.load(rs_ptr + q)
            if HAS_ALPHA:
                res += tl.load(ral_ptr + q)[:, None]
    if SPLIT:
        # the row terms and the column constants once, in split 0 (suma is 0 elsewhere)
        if COLS:
            cmask = rn < NG
            nwv = tl.load(nw_ptr + (g * NG + rn) * nw_st, mask=cmask, other=0.0).to(tl.int64)
            res += suma.to(tl.int64)[:, None] * nwv[None, :]
            if sp == 0:
                cidx = g * NP + rn
                colc = (tl.load(colw_ptr + cidx, mask=cmask, other=0)
                        + na * tl.load(wsum_ptr + cidx, mask=cmask, other=0) + K * na * nwv)
                res += colc[None, :]
    # split partials stay int64 and have their column terms already
    _epilogue_store(res, suma.to(tl.int64)[:, None], b, lpos, mmask, g * NP + rn, g * NG + rn,
                    rn < NG, K, na, colw_ptr, wsum_ptr, nw_ptr, nw_st, sa_ptr, sw_ptr, sw_st,
                    bias_ptr, out_ptr, out_sb, out_sn, out_sl, COLS and not SPLIT,
                    DEQUANT and not SPLIT, HAS_BIAS and not SPLIT)


@triton.jit(do_not_specialize=["total", "S", "part_ss", "sn", "OC", "sw_st"])
def tc_split_sum_kernel(part_ptr, out_ptr, sa_ptr, sw_ptr, bias_ptr, total, S, part_ss, sn, OC,
                        sw_st, BLOCK: tl.constexpr, DEQUANT: tl.constexpr,
                        HAS_BIAS: tl.constexpr):
    """out[i] = sum over the S int64 partials of a split tensor-core launch (complete
    accumulators: row and column terms are in split 0), element by element over the flat
    output, stored as int64 or, DEQUANT, dequantised with the fused epilogue's operations
    (output channel (i // sn) % OC)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < total
    res = tl.zeros((BLOCK,), dtype=tl.int64)
    for _ in range(0, S):
        res += tl.load(part_ptr + i, mask=m, other=0)
        part_ptr += part_ss
    if DEQUANT:
        col = (i // sn) % OC
        sc = tl.load(sa_ptr).to(tl.float64) * tl.load(sw_ptr + col * sw_st, mask=m,
                                                      other=0.0).to(tl.float64)
        y = (res.to(tl.float64) * sc).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(bias_ptr + col, mask=m, other=0.0)
        tl.store(out_ptr + i, y, mask=m)
    else:
        tl.store(out_ptr + i, res, mask=m)


# --------------------------------------------------------------------------------------------
# weight-side preparation (one launch per weight tensor; cached by the backends)


@triton.jit(do_not_specialize=["K", "NG", "CG", "KHW", "w_off", "cconst", "n_col", "n_rb"])
def prep_lut_kernel(qw_ptr, lut_ptr, t_ptr, colw_ptr, wsum_ptr,
                    K, NG, NP, R, CG, KHW, w_off, cconst, n_col, n_rb,
                    BN: tl.constexpr, RB: tl.constexpr, CBN: tl.constexpr, BK: tl.constexpr,
                    DIRECT: tl.constexpr):
    """Grid (n_col + table programs, G). Programs pid < n_col: column block pid of colw
    (= cconst: a plain LUT has no beta) and wsum. The others build the table of tap k: the
    per-tap table T[g, k, v, n] = LUT16[v, w[g, k, n]] for one block of RB codes v (program
    n_col + k * n_rb + v_block; ``lut_ptr`` is the transposed table LUT16^T, R entries per
    weight value, so each column's RB entries are one contiguous read) or, DIRECT, the uint8
    weight indices (G, K, NP) (program n_col + k; ``lut_ptr`` is not read)."""
    pid = tl.program_id(0)
    g = tl.program_id(1)
    if pid < n_col:
        _column_sums(qw_ptr, colw_ptr, wsum_ptr, g, pid, K, NG, NP, CG, KHW, cconst, CBN, BK)
    else:
        q = pid - n_col
        if DIRECT:
            for n0 in range(0, NP, BN):
                rn = n0 + tl.arange(0, BN)
                widx = _weight_index(qw_ptr, g, q, rn, rn < NG, NG, CG, KHW, w_off)
                tl.store(t_ptr + (g * K + q) * NP + rn, widx.to(tl.uint8), mask=rn < NP)
        else:
            k = q // n_rb
            rv = (q % n_rb) * RB + tl.arange(0, RB)
            vm = rv < R
            base = t_ptr + ((g * K + k) * R).to(tl.int64) * NP
            for n0 in range(0, NP, BN):
                rn = n0 + tl.arange(0, BN)
                widx = _weight_index(qw_ptr, g, k, rn, rn < NG, NG, CG, KHW, w_off)
                val = tl.load(lut_ptr + widx[None, :] * R + rv[:, None], mask=vm[:, None],
                              other=0)
                tl.store(base + rv[:, None] * NP + rn[None, :], val,
                         mask=vm[:, None] & (rn < NP)[None, :])


@triton.jit(do_not_specialize=["K", "KP", "NG", "CG", "KHW", "w_off", "v_st", "RT"])
def prep_tc_kernel(qw_ptr, vtab_ptr, beta_ptr, v_ptr, colw_ptr, wsum_ptr,
                   K, KP, NG, NP, CW, CG, KHW, w_off, v_st, RT,
                   T: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr, PACKED: tl.constexpr):
    """Grid (KP / RB, NP / BN, G): rows r = pid0*RB .. +RB and columns n = pid1*BN .. +BN of
    V[t, g, n, r] = Vtab[t, w[g, k, n]] (int8, r contiguous: the K-major operand layout of int8
    tensor-core GEMMs), in the K-tile order of ``tc_kernel``: r = k (PACKED, zero for k >= K)
    or r = tap * RT + c with k = tap * CG + c (zero for c >= CG); zero for n >= NG. The
    rows' shares of the column sums colw = sum_k beta(w) and wsum = sum_k w (int64, zeroed by
    the caller) are added atomically (integers: the order does not change the result)."""
    g = tl.program_id(2)
    r = tl.program_id(0) * RB + tl.arange(0, RB)
    if PACKED:
        k = r
        ok = r < K
    else:
        tap = r // RT
        c = r - tap * RT
        k = tap * CG + c
        ok = (c < CG) & (tap < KHW)
    kc = tl.minimum(k, K - 1)[None, :]
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    nm = (rn < NG)[:, None] & ok[None, :]
    widx = _weight_index(qw_ptr, g, kc, rn[:, None], nm, NG, CG, KHW, w_off)
    base = v_ptr + (g * NP + rn).to(tl.int64)[:, None] * KP + r[None, :]
    for t in tl.static_range(T):
        val = tl.load(vtab_ptr + t * CW + widx)
        tl.store(base + t * v_st, tl.where(nm, val, 0).to(tl.int8), mask=(rn < NP)[:, None])
    cm = rn < NG
    wsum = tl.sum(tl.where(nm, widx - w_off, 0), axis=1).to(tl.int64)
    colw = tl.sum(tl.where(nm, tl.load(beta_ptr + widx), 0), axis=1)
    tl.atomic_add(wsum_ptr + g * NP + rn, wsum, mask=cm)
    tl.atomic_add(colw_ptr + g * NP + rn, colw, mask=cm)


# --------------------------------------------------------------------------------------------
# error-aware gradients and statistics (uint8 NHWC indices)


@triton.jit(do_not_specialize=["NPIX", "C", "G", "H", "W", "OH", "OW", "SH", "SW", "PH", "PW", "DH", "DW"])
def ea_gx_kernel(a_ptr, ta_ptr, den_ptr, gs_ptr, nw_ptr, gx_ptr, NPIX, K, C, G, CG, NP, H, W,
                 OH, OW, SH, SW, PH, PW, DH, DW, KH: tl.constexpr, KW: tl.constexpr,
                 BM: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr):
    """gx[b, c, y, x] (NCHW) straight from the input side: for every input pixel and channel,
    over the taps (ky, kx) whose window covers it (output row m), sum_n gs[m, g, n] *
    (TA[a, g, k, n] / den[a] + n_w[g, n]) with a = a[b, y, x, c], k = (ky, kx, c - g*CG);
    TA (R, G*K, NP) holds int16 numerators or float32 values (den 1). A program takes BM
    pixels x BC channels of one group, so each gs tile serves BC channels; one division per
    (pixel, channel) at the end, no per-tap buffer and no col2im. BN == NP."""
    pid = tl.program_id(0)
    cb = tl.program_id(1)
    g = tl.program_id(2)
    c = cb * BC + tl.arange(0, BC)
    cmask = c < CG
    ch = g * CG + tl.minimum(c, CG - 1)
    rp = pid * BM + tl.arange(0, BM)
    pmask = rp < NPIX
    HW = H * W
    b = rp // HW
    y = (rp % HW) // W
    x = rp % W
    amask = cmask[:, None] & pmask[None, :]
    a = tl.load(a_ptr + rp.to(tl.int64)[None, :] * C + ch[:, None], mask=amask,
                other=0).to(tl.int32)
    rn = tl.arange(0, BN)
    nw = tl.load(nw_ptr + g * NP + rn)
    tbase = ta_ptr + (((a * G + g) * K)[:, :, None] + ch[:, None, None] - g * CG) * NP \
        + rn[None, None, :]
    acc = tl.zeros([BC, BM, BN], dtype=tl.float32)
    gsum = tl.zeros([BM, BN], dtype=tl.float32)
    for ky in tl.static_range(KH):
        ty = y + PH - ky * DH
        oy = ty // SH
        oky = pmask & (ty >= 0) & (ty - oy * SH == 0) & (oy < OH)
        for kx in tl.static_range(KW):
            tx = x + PW - kx * DW
            ox = tx // SW
            ok = oky & (tx >= 0) & (tx - ox * SW == 0) & (ox < OW)
            m = (b * OH + oy) * OW + ox
            gs = tl.load(gs_ptr + (m.to(tl.int64) * G + g)[:, None] * NP + rn[None, :],
                         mask=ok[:, None], other=0.0)
            rows = tl.load(tbase + ((ky * KW + kx) * CG) * NP, mask=ok[None, :, None],
                           other=0).to(tl.float32)
            acc += rows * gs[None, :, :]
            gsum += gs
    den = tl.load(den_ptr + a)
    out = tl.sum(acc, axis=2) / den + tl.sum(gsum * nw[None, :], axis=1)[None, :]
    gptr = gx_ptr + ((b.to(tl.int64) * C)[None, :] + ch[:, None]) * HW + (y * W + x)[None, :]
    tl.store(gptr, out, mask=amask)


@triton.jit(do_not_specialize=["M", "K", "G", "H", "W", "C", "CG", "OH", "OW", "SH", "SW", "PH", "PW", "m_per_split"])
def ea_gw_kernel(a_ptr, tw_ptr, gy_ptr, part_ptr, koff_ptr, kdy_ptr, kdx_ptr,
                 M, K, G, NP, H, W, C, CG, OH, OW, SH, SW, PH, PW, pad_ptr, m_per_split,
                 BM: tl.constexpr, BN: tl.constexpr, BKK: tl.constexpr):
    """part[s, g, k, n] = sum over rows m of split s of gy[m, g, n] * TW[a[m, k], g, k, n]
    for BKK taps k at once (TW (R, G*K, NP) int16 numerators or float32 values; padding taps
    read the index ``pad_ptr[0]``). A [BKK, BM, BN] accumulator shares each gy tile among
    the BKK taps and is reduced over the rows once, at the end."""
    pad_idx = tl.load(pad_ptr)
    pid_k = tl.program_id(0)
    s = tl.program_id(1)
    g = tl.program_id(2)
    rn = tl.arange(0, BN)
    rk = pid_k * BKK + tl.arange(0, BKK)
    kvalid = rk < K
    kc = tl.minimum(rk, K - 1)
    ko = tl.load(koff_ptr + kc)
    dy = tl.load(kdy_ptr + kc)
    dx = tl.load(kdx_ptr + kc)
    trow = (g * K + kc)[:, None]
    GK = G * K
    m_lo = s * m_per_split
    m_hi = tl.minimum(m_lo + m_per_split, M)
    acc = tl.zeros([BKK, BM, BN], dtype=tl.float32)
    for m0 in range(m_lo, m_hi, BM):
        rm = m0 + tl.arange(0, BM)
        mmask = rm < m_hi
        b, lpos, ih0, iw0 = _rows(rm, OH, OW, SH, SW, PH, PW)
        base = ((b * H + ih0) * W + iw0) * C + g * CG
        gy = tl.load(gy_ptr + (rm.to(tl.int64) * G + g)[:, None] * NP + rn[None, :],
                     mask=mmask[:, None], other=0.0)
        ok = _inside(mmask[None, :], ih0[None, :] + dy[:, None], iw0[None, :] + dx[:, None],
                     H, W)
        a = tl.load(a_ptr + base[None, :] + ko[:, None], mask=ok, other=pad_idx).to(tl.int32)
        rows = tl.load(tw_ptr + ((a * GK + trow) * NP)[:, :, None] + rn[None, None, :])
        acc += rows.to(tl.float32) * gy[None, :, :]
    part = tl.sum(acc, axis=1)
    pptr = part_ptr + ((s * G + g).to(tl.int64) * K + kc)[:, None] * NP + rn[None, :]
    tl.store(pptr, part, mask=kvalid[:, None])
