"""Triton kernels of the GPU backends (imported only where Triton is installed).

All convolution kernels read activations as uint8 *table indices* (code + offset) in NHWC
layout and do the im2col inside the kernel ("implicit GEMM"): output row m = (b, oy, ox), tap
k = (ky, kx, c) in that order (channels fastest, so consecutive taps are consecutive bytes),
and the per-tap tables ``koff`` (offset of the tap relative to the window origin), ``kdy``,
``kdx`` (its row/column displacement) give each tap's address and bounds check. Taps that fall
into the padding read ``pad_idx``, the index of the code of real zero.

The integer epilogue adds the exact zero-point cross terms of :mod:`axcnn.ops.problem`:

    acc[m, n] += (sum_k code(a[m, k])) * n_w[n] + colc[n]

(``colc`` holds n_a*sum_k w + K*n_a*n_w and every per-column constant of the kernel), then
either stores int64 accumulators or, fused (``DEQUANT``), float32(float64(acc) * scale[n]) (+
bias[n]) -- the same IEEE operations as the unfused dequantisation, so the output is identical.

Kernels:
- ``nhwc_index_kernel``: float codes NCHW -> uint8 indices NHWC (one pass).
- ``lut_kernel``: CUDA-core LUT GEMM, int32 accumulators. ``DIRECT=False``: per-tap tables
  T[g, k, v, n] = LUT[v, w[g, k, n]] - tmin (uint16, built once per call), so every (row, tap)
  reads one contiguous row of T (vector loads, no bank conflicts); ``DIRECT=True``: gathers
  LUT[a, w] (uint16, L1-resident) for problems whose per-tap tables would not fit in L2.
- ``dw_kernel``: depthwise / channel-multiplier convolutions (one input channel per group).
- ``tc_kernel``: sum_t s_t U_t(A) @ V_t(W) on int8 tensor cores (``tl.dot`` int8 -> int32) with
  the activation maps U_t gathered in the kernel, plus the row function alpha: the decomposed
  backend's fused kernel. Terms are grouped in up to four scale classes (own accumulators).
- ``ea_gx_kernel`` / ``ea_gw_kernel``: error-aware gradients through per-tap float32 tables of
  the gradient tables (one contiguous row per (row, tap), like ``lut_kernel``).
- ``tap_hist_kernel``: per-tap activation-index histograms (exact counts, padding included)
  for the operand statistics.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["total", "C", "HW", "off"])
def nhwc_index_kernel(x_ptr, out_ptr, total, C, HW, off, BLOCK: tl.constexpr):
    """out[b, h, w, c] = uint8(x[b, c, h, w] + off) (x holds exact integers)."""
    pid = tl.program_id(0)
    o = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = o < total
    c = o % C
    rest = o // C
    hw = rest % HW
    b = rest // HW
    src = (b * C + c) * HW + hw
    x = tl.load(x_ptr + src, mask=mask, other=0.0)
    v = (x + off).to(tl.int32)
    tl.store(out_ptr + o, v.to(tl.uint8), mask=mask)


@triton.jit(do_not_specialize=["M", "K", "H", "W", "C", "CG", "OH", "OW", "SH", "SW", "PH", "PW", "pad_idx", "a_off", "out_sb", "out_sn", "out_sl"])
def lut_kernel(a_ptr, tab_ptr, widx_ptr, koff_ptr, kdy_ptr, kdx_ptr,
               colc_ptr, nw_ptr, scale_ptr, bias_ptr, out_ptr,
               M, K, NG, NP, R, CW, H, W, C, CG, OH, OW, SH, SW, PH, PW,
               pad_idx, a_off, out_sb, out_sn, out_sl,
               BM: tl.constexpr, BN: tl.constexpr, DIRECT: tl.constexpr,
               DEQUANT: tl.constexpr, HAS_BIAS: tl.constexpr, ACC64: tl.constexpr,
               UNROLL: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    mmask = rm < M
    L = OH * OW
    b = rm // L
    lpos = rm % L
    ih0 = (lpos // OW) * SH - PH
    iw0 = (lpos % OW) * SW - PW
    base = ((b * H + ih0) * W + iw0) * C + g * CG
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
        ih = ih0 + dy
        iw = iw0 + dx
        ok = mmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(a_ptr + base + ko, mask=ok, other=pad_idx).to(tl.int32)
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
    sa = suma.to(tl.int64) - K * a_off
    cidx = g * NP + rn
    colc = tl.load(colc_ptr + cidx)
    nw = tl.load(nw_ptr + cidx)
    res = acc.to(tl.int64) + sa[:, None] * nw[None, :] + colc[None, :]
    omask = mmask[:, None] & (rn < NG)[None, :]
    optr = (out_ptr + b.to(tl.int64)[:, None] * out_sb + (g * NG + rn).to(tl.int64)[None, :] * out_sn
            + lpos.to(tl.int64)[:, None] * out_sl)
    if DEQUANT:
        sc = tl.load(scale_ptr + cidx)
        y = (res.to(tl.float64) * sc[None, :]).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(bias_ptr + g * NG + rn, mask=rn < NG, other=0.0)[None, :]
        tl.store(optr, y, mask=omask)
    else:
        tl.store(optr, res, mask=omask)


@triton.jit(do_not_specialize=["M", "K", "H", "W", "C", "OH", "OW", "SH", "SW", "PH", "PW", "pad_idx", "a_off", "out_sb", "out_sn", "out_sl"])
def dw_kernel(a_ptr, lut_ptr, widx_ptr, koff_ptr, kdy_ptr, kdx_ptr,
              colc_ptr, nw_ptr, scale_ptr, bias_ptr, out_ptr,
              M, K, OC, NGM, CW, H, W, C, OH, OW, SH, SW, PH, PW,
              pad_idx, a_off, out_sb, out_sn, out_sl,
              BM: tl.constexpr, BO: tl.constexpr,
              DEQUANT: tl.constexpr, HAS_BIAS: tl.constexpr, UNROLL: tl.constexpr):
    """Grouped conv with one input channel per group: output channel o reads channel o // NGM."""
    pid_m = tl.program_id(0)
    pid_o = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    ro = pid_o * BO + tl.arange(0, BO)
    mmask = rm < M
    omask1 = ro < OC
    cin = ro // NGM
    L = OH * OW
    b = rm // L
    lpos = rm % L
    ih0 = (lpos // OW) * SH - PH
    iw0 = (lpos % OW) * SW - PW
    base = ((b * H + ih0) * W + iw0) * C
    acc = tl.zeros((BM, BO), dtype=tl.int32)
    suma = tl.zeros((BM, BO), dtype=tl.int32)
    for k in tl.range(0, K, loop_unroll_factor=UNROLL):
        ko = tl.load(koff_ptr + k)
        dy = tl.load(kdy_ptr + k)
        dx = tl.load(kdx_ptr + k)
        ih = ih0 + dy
        iw = iw0 + dx
        ok = mmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(a_ptr + (base + ko)[:, None] + cin[None, :],
                    mask=ok[:, None] & omask1[None, :], other=pad_idx).to(tl.int32)
        suma += a
        wv = tl.load(widx_ptr + ro * K + k, mask=omask1, other=0).to(tl.int32)
        acc += tl.load(lut_ptr + a * CW + wv[None, :]).to(tl.int32)
    sa = suma.to(tl.int64) - K * a_off
    colc = tl.load(colc_ptr + ro, mask=omask1, other=0)
    nw = tl.load(nw_ptr + ro, mask=omask1, other=0)
    res = acc.to(tl.int64) + sa * nw[None, :] + colc[None, :]
    omask = mmask[:, None] & omask1[None, :]
    optr = (out_ptr + b.to(tl.int64)[:, None] * out_sb + ro.to(tl.int64)[None, :] * out_sn
            + lpos.to(tl.int64)[:, None] * out_sl)
    if DEQUANT:
        sc = tl.load(scale_ptr + ro, mask=omask1, other=0.0)
        y = (res.to(tl.float64) * sc[None, :]).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(bias_ptr + ro, mask=omask1, other=0.0)[None, :]
        tl.store(optr, y, mask=omask)
    else:
        tl.store(optr, res, mask=omask)


@triton.jit(do_not_specialize=["M", "K", "H", "W", "C", "CG", "OH", "OW", "SH", "SW", "PH", "PW", "pad_idx", "a_off", "out_sb", "out_sn", "out_sl"])
def tc_kernel(a_ptr, u_ptr, v_ptr, alpha_ptr, koff_ptr, kdy_ptr, kdx_ptr,
              colc_ptr, nw_ptr, scale_ptr, bias_ptr, out_ptr,
              s0, s1, s2, s3,
              M, K, NG, NP, R, H, W, C, CG, OH, OW, SH, SW, PH, PW,
              pad_idx, a_off, v_st, v_sg, out_sb, out_sn, out_sl,
              T0: tl.constexpr, T1: tl.constexpr, T2: tl.constexpr, T3: tl.constexpr,
              HAS_ALPHA: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
              DEQUANT: tl.constexpr, HAS_BIAS: tl.constexpr, WIDE: tl.constexpr):
    # alpha_ptr holds int32 values (the launcher checks BK * max|alpha| < 2^31)
    """acc = sum over classes c of s_c * sum_{t in c} U_t(A) @ V_t(W)  (+ alpha row sums)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    mmask = rm < M
    L = OH * OW
    b = rm // L
    lpos = rm % L
    ih0 = (lpos // OW) * SH - PH
    iw0 = (lpos % OW) * SW - PW
    base = ((b * H + ih0) * W + iw0) * C + g * CG
    acc0 = tl.zeros((BM, BN), dtype=tl.int32)
    acc1 = tl.zeros((BM, BN), dtype=tl.int32)
    acc2 = tl.zeros((BM, BN), dtype=tl.int32)
    acc3 = tl.zeros((BM, BN), dtype=tl.int32)
    wide = tl.zeros((BM, BN), dtype=tl.int64)
    suma = tl.zeros((BM,), dtype=tl.int32)
    sal = tl.zeros((BM,), dtype=tl.int64)
    vbase = v_ptr + g * v_sg + rn[None, :]
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        kmask = rk < K
        ko = tl.load(koff_ptr + rk)
        dy = tl.load(kdy_ptr + rk)
        dx = tl.load(kdx_ptr + rk)
        ih = ih0[:, None] + dy[None, :]
        iw = iw0[:, None] + dx[None, :]
        ok = (mmask[:, None] & kmask[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W))
        a = tl.load(a_ptr + base[:, None] + ko[None, :], mask=ok, other=pad_idx).to(tl.int32)
        suma += tl.sum(tl.where(kmask[None, :], a - a_off, 0), axis=1)
        if HAS_ALPHA:
            al = tl.load(alpha_ptr + a)
            sal += tl.sum(tl.where(kmask[None, :], al, 0), axis=1).to(tl.int64)
        vk = vbase + rk[:, None] * NP
        for t in tl.static_range(T0):
            u = tl.load(u_ptr + t * R + a)
            v = tl.load(vk + t * v_st)
            if WIDE:
                wide += tl.dot(u, v, out_dtype=tl.int32).to(tl.int64) * s0
            else:
                acc0 = tl.dot(u, v, acc0, out_dtype=tl.int32)
        for t in tl.static_range(T0, T0 + T1):
            u = tl.load(u_ptr + t * R + a)
            v = tl.load(vk + t * v_st)
            if WIDE:
                wide += tl.dot(u, v, out_dtype=tl.int32).to(tl.int64) * s1
            else:
                acc1 = tl.dot(u, v, acc1, out_dtype=tl.int32)
        for t in tl.static_range(T0 + T1, T0 + T1 + T2):
            u = tl.load(u_ptr + t * R + a)
            v = tl.load(vk + t * v_st)
            if WIDE:
                wide += tl.dot(u, v, out_dtype=tl.int32).to(tl.int64) * s2
            else:
                acc2 = tl.dot(u, v, acc2, out_dtype=tl.int32)
        for t in tl.static_range(T0 + T1 + T2, T0 + T1 + T2 + T3):
            u = tl.load(u_ptr + t * R + a)
            v = tl.load(vk + t * v_st)
            if WIDE:
                wide += tl.dot(u, v, out_dtype=tl.int32).to(tl.int64) * s3
            else:
                acc3 = tl.dot(u, v, acc3, out_dtype=tl.int32)
    res = wide
    if T0 > 0:
        res += acc0.to(tl.int64) * s0
    if T1 > 0:
        res += acc1.to(tl.int64) * s1
    if T2 > 0:
        res += acc2.to(tl.int64) * s2
    if T3 > 0:
        res += acc3.to(tl.int64) * s3
    cidx = g * NP + rn
    colc = tl.load(colc_ptr + cidx)
    nw = tl.load(nw_ptr + cidx)
    res += suma.to(tl.int64)[:, None] * nw[None, :] + colc[None, :]
    if HAS_ALPHA:
        res += sal[:, None]
    omask = mmask[:, None] & (rn < NG)[None, :]
    optr = (out_ptr + b.to(tl.int64)[:, None] * out_sb + (g * NG + rn).to(tl.int64)[None, :] * out_sn
            + lpos.to(tl.int64)[:, None] * out_sl)
    if DEQUANT:
        sc = tl.load(scale_ptr + cidx)
        y = (res.to(tl.float64) * sc[None, :]).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(bias_ptr + g * NG + rn, mask=rn < NG, other=0.0)[None, :]
        tl.store(optr, y, mask=omask)
    else:
        tl.store(optr, res, mask=omask)


@triton.jit(do_not_specialize=["M", "K", "G", "H", "W", "C", "CG", "OH", "OW", "SH", "SW", "PH", "PW", "pad_idx"])
def ea_gx_kernel(a_ptr, ta_ptr, gs_ptr, nw_ptr, out_ptr, koff_ptr, kdy_ptr, kdx_ptr,
                 M, K, G, NP, R, H, W, C, CG, OH, OW, SH, SW, PH, PW, pad_idx,
                 BM: tl.constexpr, BN: tl.constexpr, UNROLL: tl.constexpr):
    """out[g, k, m] = sum_n gs[m, g, n] * (TA[g, k, a[m, k], n] + n_w[g, n]); BN == NP."""
    pid_m = tl.program_id(0)
    g = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = tl.arange(0, BN)
    mmask = rm < M
    L = OH * OW
    b = rm // L
    lpos = rm % L
    ih0 = (lpos // OW) * SH - PH
    iw0 = (lpos % OW) * SW - PW
    base = ((b * H + ih0) * W + iw0) * C + g * CG
    gs = tl.load(gs_ptr + (rm.to(tl.int64) * G + g)[:, None] * NP + rn[None, :],
                 mask=mmask[:, None] & (rn < BN)[None, :], other=0.0)
    nw = tl.load(nw_ptr + g * NP + rn)
    cst = tl.sum(gs * nw[None, :], axis=1)
    tbase = ta_ptr + g.to(tl.int64) * K * R * NP + rn[None, :]
    obase = out_ptr + g.to(tl.int64) * K * M + rm
    for k in tl.range(0, K, loop_unroll_factor=UNROLL):
        ko = tl.load(koff_ptr + k)
        dy = tl.load(kdy_ptr + k)
        dx = tl.load(kdx_ptr + k)
        ih = ih0 + dy
        iw = iw0 + dx
        ok = mmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(a_ptr + base + ko, mask=ok, other=pad_idx).to(tl.int32)
        rows = tl.load(tbase + (k * R + a)[:, None] * NP)
        s = tl.sum(rows * gs, axis=1) + cst
        tl.store(obase + k * M, s, mask=mmask)


@triton.jit(do_not_specialize=["M", "K", "G", "H", "W", "C", "CG", "OH", "OW", "SH", "SW", "PH", "PW", "pad_idx", "m_per_split"])
def ea_gw_kernel(a_ptr, tw_ptr, gy_ptr, part_ptr, koff_ptr, kdy_ptr, kdx_ptr,
                 M, K, G, NP, R, H, W, C, CG, OH, OW, SH, SW, PH, PW, pad_idx, m_per_split,
                 BM: tl.constexpr, BN: tl.constexpr, BKK: tl.constexpr):
    """part[s, g, k, n] = sum over rows m of split s of gy[m, g, n] * TW[g, k, a[m, k], n]."""
    pid_k = tl.program_id(0)
    s = tl.program_id(1)
    g = tl.program_id(2)
    rn = tl.arange(0, BN)
    L = OH * OW
    m_lo = s * m_per_split
    m_hi = tl.minimum(m_lo + m_per_split, M)
    tbase = tw_ptr + g.to(tl.int64) * K * R * NP + rn[None, :]
    pbase = part_ptr + ((s * G + g).to(tl.int64) * K) * NP + rn
    for m0 in range(m_lo, m_hi, BM):
        rm = m0 + tl.arange(0, BM)
        mmask = rm < m_hi
        b = rm // L
        lpos = rm % L
        ih0 = (lpos // OW) * SH - PH
        iw0 = (lpos % OW) * SW - PW
        base = ((b * H + ih0) * W + iw0) * C + g * CG
        gy = tl.load(gy_ptr + (rm.to(tl.int64) * G + g)[:, None] * NP + rn[None, :],
                     mask=mmask[:, None] & (rn < BN)[None, :], other=0.0)
        for kk in range(0, BKK):
            k = pid_k * BKK + kk
            kvalid = k < K
            kc = tl.minimum(k, K - 1)
            ko = tl.load(koff_ptr + kc)
            dy = tl.load(kdy_ptr + kc)
            dx = tl.load(kdx_ptr + kc)
            ih = ih0 + dy
            iw = iw0 + dx
            ok = mmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(a_ptr + base + ko, mask=ok, other=pad_idx).to(tl.int32)
            rows = tl.load(tbase + (kc * R + a)[:, None] * NP)
            part = tl.sum(rows * gy, axis=0)
            p = pbase + kc * NP
            smask = rn < tl.where(kvalid, BN, 0)
            tl.store(p, tl.load(p, mask=smask, other=0.0) + part, mask=smask)


@triton.jit(do_not_specialize=["M", "K", "H", "W", "C", "CG", "OH", "OW", "SH", "SW", "PH", "PW", "pad_idx"])
def tap_hist_kernel(a_ptr, hist_ptr, koff_ptr, kdy_ptr, kdx_ptr,
                    M, K, R, H, W, C, CG, OH, OW, SH, SW, PH, PW, pad_idx, m_per_prog,
                    BM: tl.constexpr, RB: tl.constexpr):
    """hist[g, k, v] += #{rows m of this program's range : a[m, k] == v} (int32 atomics)."""
    k = tl.program_id(0)
    pid = tl.program_id(1)
    g = tl.program_id(2)
    ko = tl.load(koff_ptr + k)
    dy = tl.load(kdy_ptr + k)
    dx = tl.load(kdx_ptr + k)
    L = OH * OW
    h = tl.zeros((RB,), dtype=tl.int32)
    m_lo = pid * m_per_prog
    m_hi = tl.minimum(m_lo + m_per_prog, M)
    for m0 in range(m_lo, m_hi, BM):
        rm = m0 + tl.arange(0, BM)
        mmask = rm < m_hi
        b = rm // L
        lpos = rm % L
        ih0 = (lpos // OW) * SH - PH
        iw0 = (lpos % OW) * SW - PW
        ih = ih0 + dy
        iw = iw0 + dx
        ok = mmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(a_ptr + ((b * H + ih0) * W + iw0) * C + g * CG + ko, mask=ok,
                    other=pad_idx).to(tl.int32)
        h += tl.histogram(a, RB, mask=mmask)
    rv = tl.arange(0, RB)
    tl.atomic_add(hist_ptr + (g * K + k) * R + rv, h, mask=rv < R)


@triton.jit(do_not_specialize=["K", "NG", "CG", "KHW", "w_off"])
def prep_lut_kernel(qw_ptr, lut_ptr, t_ptr, K, NG, NP, R, CW, CG, KHW, w_off,
                    BN: tl.constexpr, RB: tl.constexpr, DIRECT: tl.constexpr):
    """Per-tap table T[g, k, v, n] = LUT16[v, w[g, k, n]] for v in this program's block of RB
    codes (or, DIRECT, the uint8 weight indices (G, K, NP)), from the float codes qw."""
    k = tl.program_id(0)
    g = tl.program_id(1)
    vb = tl.program_id(2)
    tap = k // CG
    c = k % CG
    rv = vb * RB + tl.arange(0, RB)
    for n0 in range(0, NP, BN):
        rn = n0 + tl.arange(0, BN)
        nm = rn < NG
        wq = tl.load(qw_ptr + ((g * NG + rn) * CG + c) * KHW + tap, mask=nm, other=0.0)
        widx = tl.where(nm, (wq + w_off).to(tl.int32), 0)
        if DIRECT:
            tl.store(t_ptr + (g * K + k) * NP + rn, widx.to(tl.uint8), mask=rn < tl.where(vb == 0, NP, 0))
        else:
            vm = rv < R
            val = tl.load(lut_ptr + rv[:, None] * CW + widx[None, :], mask=vm[:, None], other=0)
            base = t_ptr + ((g * K + k) * R).to(tl.int64) * NP
            tl.store(base + rv[:, None] * NP + rn[None, :], val,
                     mask=vm[:, None] & (rn < NP)[None, :])


@triton.jit(do_not_specialize=["K", "KP", "NG", "CG", "KHW", "w_off", "v_st"])
def prep_tc_kernel(qw_ptr, vtab_ptr, v_ptr, K, KP, NG, NP, CW, CG, KHW, w_off, v_st,
                   T: tl.constexpr, BN: tl.constexpr):
    """V[t, g, k, n] = Vtab[t, w[g, k, n]] (int8), zero for k >= K or n >= NG."""
    k = tl.program_id(0)
    g = tl.program_id(1)
    kc = tl.minimum(k, K - 1)
    tap = kc // CG
    c = kc % CG
    for n0 in range(0, NP, BN):
        rn = n0 + tl.arange(0, BN)
        nm = rn < tl.where(k < K, NG, 0)
        wq = tl.load(qw_ptr + ((g * NG + rn) * CG + c) * KHW + tap, mask=nm, other=0.0)
        widx = tl.where(nm, (wq + w_off).to(tl.int32), 0)
        base = v_ptr + (g * KP + k).to(tl.int64) * NP + rn
        for t in tl.static_range(T):
            val = tl.load(vtab_ptr + t * CW + widx)
            tl.store(base + t * v_st, tl.where(nm, val, 0).to(tl.int8), mask=rn < NP)


@triton.jit(do_not_specialize=["K", "NG", "CG", "KHW", "w_off", "n_a", "cconst"])
def prep_cols_kernel(qw_ptr, nw_ptr, beta_ptr, sa_ptr, sw_ptr, colc_ptr, nwo_ptr, scale_ptr,
                     K, NG, NP, CG, KHW, w_off, n_a, cconst,
                     BN: tl.constexpr, BK: tl.constexpr, HAS_BETA: tl.constexpr,
                     SCALE: tl.constexpr, SW_VEC: tl.constexpr):
    """Per-column epilogue operands, padded to NP per group: colc = cconst + sum_k beta(w)
    + n_a * sum_k w + K * n_a * n_w, n_w as int64 and (SCALE) float64(s_a) * float64(s_w)."""
    g = tl.program_id(0)
    pid_n = tl.program_id(1)
    rn = pid_n * BN + tl.arange(0, BN)
    nm = rn < NG
    sw = tl.zeros((BN,), dtype=tl.int64)
    sb = tl.zeros((BN,), dtype=tl.int64)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        km = rk < K
        tap = rk // CG
        c = rk % CG
        m2 = km[:, None] & nm[None, :]
        wq = tl.load(qw_ptr + ((g * NG + rn[None, :]) * CG + c[:, None]) * KHW + tap[:, None],
                     mask=m2, other=0.0)
        code = wq.to(tl.int32)
        sw += tl.sum(code, axis=0).to(tl.int64)
        if HAS_BETA:
            bv = tl.load(beta_ptr + tl.where(m2, code + w_off, 0))
            sb += tl.sum(tl.where(m2, bv, 0), axis=0)
    nwv = tl.load(nw_ptr + g * NG + rn, mask=nm, other=0.0).to(tl.int64)
    colc = cconst + sb + n_a * sw + K * n_a * nwv
    tl.store(colc_ptr + g * NP + rn, tl.where(nm, colc, 0), mask=rn < NP)
    tl.store(nwo_ptr + g * NP + rn, tl.where(nm, nwv, 0), mask=rn < NP)
    if SCALE:
        sa = tl.load(sa_ptr).to(tl.float64)
        if SW_VEC:
            swv = tl.load(sw_ptr + g * NG + rn, mask=nm, other=0.0).to(tl.float64)
        else:
            swv = tl.load(sw_ptr + rn * 0).to(tl.float64)
        tl.store(scale_ptr + g * NP + rn, tl.where(nm, sa * swv, 0.0), mask=rn < NP)
