"""The ``triton`` backend: fused GPU kernels for approximate (LUT) and exact quantized convs.

Everything is compiled at run time by Triton (no CUDA toolkit, no build step). Kernels live in
:mod:`axcnn.ops.gpu.kernels`; this module prepares operands and launches them.

Forward (``conv2d_acc``, ``conv2d_dequant``, ``lut_gemm``):

- activations become uint8 table indices in NHWC (one pass); the im2col happens inside the
  kernels (implicit GEMM), padding taps read the index of the code of real zero;
- LUT products on CUDA cores with int32 accumulators:
  *per-tap tables* T[g, k, v, n] = LUT[v, w[g, k, n]] - mid (int16, built once per call from
  the weights, G*K*R*Np entries) turn every (output row, tap) into one contiguous row read --
  no random shared-memory lookups and no bank conflicts; when these tables would not fit in
  L2 (very wide layers, 4096^3 GEMMs) the *direct* kernel gathers LUT[a, w] from a 16-bit LUT
  that stays in L1; depthwise/channel-multiplier convs have their own kernel;
- exact products (quantized mode, ``table is None``) run on int8 tensor cores through the
  decomposed kernel with the one-term factorisation of the exact product;
- the zero-point cross terms and, in ``conv2d_dequant``, the dequantisation and bias are fused
  into the epilogue with the same IEEE operations as the unfused path (bit-identical output).

Backward (error-aware rule, ``error_aware_grads``): per-tap float32 tables of the gradient
tables, one contiguous row per (row, tap) again; the input gradient is folded with ``F.fold``.
Problems whose per-tap gradient tables exceed :data:`GRAD_TABLE_MAX` use the torch backend's
chunked gather (exact same formulas). STE gradients are cuDNN convolutions (functional layer).

``supports`` returns a reason on machines without CUDA or Triton; with ``TRITON_INTERPRET=1``
the kernels also run on CPU tensors through Triton's interpreter (used by the CPU tests).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .backends import Backend, register_backend
from .problem import IntConvProblem
from .torch_backend import TorchBackend

#: per-tap LUT tables up to this size (bytes) are built whole; larger ones are built and used
#: in chunks of output channels (groups == 1) or, for grouped convs, use the direct kernel
TAP_TABLE_MAX = 1 << 30
#: force the LUT kernel ("tap" or "direct"; tests and benchmarks), None: automatic
FORCE_MODE: str | None = None
#: per-tap gradient tables larger than this (bytes) fall back to the torch backend's gathers
GRAD_TABLE_MAX = 160 << 20
#: kernel configuration overrides (benchmarks sweep these)
CONFIG: dict[str, dict] = {
    "lut": {"BM": None, "BN": None, "num_warps": 4, "unroll": 4},
    "direct": {"BM": 64, "BN": None, "num_warps": 4, "unroll": 4},
    "dw": {"BM": 64, "BO": 32, "num_warps": 4, "unroll": 3},
    "ea_gx": {"unroll": 2},
    "tc": {"BM": 128, "BN": None, "BK": 64, "num_warps": 4, "num_stages": 3},
}


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


_STATUS: list = []


def triton_status() -> str | None:
    """None if Triton kernels can run here, else the reason (cached)."""
    if not _STATUS:
        reason = None
        try:
            import triton  # noqa: F401
        except Exception as exc:  # ImportError or a broken install
            reason = f"Triton is not importable ({exc.__class__.__name__}: {exc}); pip install triton"
        _STATUS.append(reason)
    return _STATUS[0]


def kernels():
    """The Triton kernel module (imports Triton)."""
    from .gpu import kernels as k
    return k


def device_ok(device: torch.device) -> str | None:
    """None if the Triton kernels can run on ``device``; Triton is imported only for CUDA
    devices (or the CPU under TRITON_INTERPRET=1), so CPU-only use never loads it."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
    elif not (device.type == "cpu" and interpreting()):
        return f"Triton kernels need a CUDA device (got {device})"
    return triton_status()


# --------------------------------------------------------------------------------------------
# operand preparation

@dataclass(frozen=True)
class ConvShape:
    B: int
    C: int
    H: int
    W: int
    OC: int
    G: int
    kh: int
    kw: int
    OH: int
    OW: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    @property
    def Cg(self) -> int:
        return self.C // self.G

    @property
    def Ng(self) -> int:
        return self.OC // self.G

    @property
    def K(self) -> int:
        return self.kh * self.kw * self.Cg

    @property
    def M(self) -> int:
        return self.B * self.OH * self.OW

    @property
    def L(self) -> int:
        return self.OH * self.OW

    @property
    def macs(self) -> int:
        return self.M * self.K * self.OC

    @classmethod
    def of(cls, p: IntConvProblem) -> "ConvShape":
        B, C, H, W = p.qa.shape
        OC, _, kh, kw = p.qw.shape
        g = p.geometry
        oh, ow = g.output_hw(H, W, kh, kw)
        return cls(B, C, H, W, OC, g.groups, kh, kw, oh, ow, tuple(g.stride), tuple(g.padding),
                   tuple(g.dilation))

    @classmethod
    def gemm(cls, M: int, G: int, K: int, N: int) -> "ConvShape":
        return cls(M, G * K, 1, 1, G * N, G, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1))


def padded_n(ng: int, block: int = 64) -> int:
    """Columns per group as stored (a multiple of 16, and of ``block`` above it)."""
    np_ = max(16, -(-ng // 16) * 16)
    if np_ > block:
        np_ = -(-ng // block) * block
    return np_


_GEOM_CACHE: dict = {}


def geometry_tables(s: ConvShape, device: torch.device, pad_to: int = 1):
    """int32 koff, kdy, kdx per tap k = (ky, kx, c), zero-padded to a multiple of ``pad_to``."""
    key = (s.C, s.W, s.kh, s.kw, s.Cg, s.dilation, str(device), pad_to)
    hit = _GEOM_CACHE.get(key)
    if hit is not None:
        return hit
    dh, dw = s.dilation
    ky = torch.arange(s.kh).view(-1, 1, 1)
    kx = torch.arange(s.kw).view(1, -1, 1)
    c = torch.arange(s.Cg).view(1, 1, -1)
    koff = ((ky * dh * s.W + kx * dw) * s.C + c).reshape(-1)
    kdy = (ky * dh + 0 * kx + 0 * c).reshape(-1)
    kdx = (kx * dw + 0 * ky + 0 * c).reshape(-1)
    K = koff.numel()
    KP = -(-K // pad_to) * pad_to
    out = []
    for t in (koff, kdy, kdx):
        z = torch.zeros(KP, dtype=torch.int32)
        z[:K] = t.to(torch.int32)
        out.append(z.to(device))
    out = tuple(out)
    if len(_GEOM_CACHE) > 512:
        _GEOM_CACHE.clear()
    _GEOM_CACHE[key] = out
    return out


def activation_index(qa: torch.Tensor, a_off: int) -> torch.Tensor:
    """uint8 (B, H, W, C) table indices of float activation codes (B, C, H, W)."""
    B, C, H, W = qa.shape
    out = torch.empty((B, H, W, C), dtype=torch.uint8, device=qa.device)
    total = out.numel()
    if total == 0:
        return out
    x = qa.contiguous()
    if x.dtype != torch.float32:
        x = x.float()
    BLOCK = 1024
    kernels().nhwc_index_kernel[(triton_cdiv(total, BLOCK),)](x, out, total, C, H * W, float(a_off),
                                                            BLOCK=BLOCK)
    return out


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def weight_index(qw: torch.Tensor, groups: int, w_off: int) -> torch.Tensor:
    """int64 (G, K, Ng) weight table indices, taps ordered (ky, kx, c)."""
    OC, Cg, kh, kw = qw.shape
    G = groups
    w = qw.reshape(G, OC // G, Cg, kh, kw).permute(0, 3, 4, 2, 1).reshape(G, kh * kw * Cg, OC // G)
    return (w + w_off).round().to(torch.int64)


def zero_points(p: IntConvProblem) -> tuple[int, torch.Tensor]:
    """(n_a as int, n_w as a contiguous float32 (OC,) tensor of exact integers)."""
    n_a = int(round(float(p.n_a)))
    n_w = p.n_w.reshape(-1).to(p.qa.device)
    if n_w.numel() == 1:
        n_w = n_w.expand(p.qw.shape[0])
    return n_a, n_w.float().contiguous()


def _dummy(device, dtype=torch.int64):
    return torch.zeros(1, dtype=dtype, device=device)


def _out_layout(s: ConvShape, gemm: bool):
    """(shape, strides b/n/l) of the output: NCHW for convs, (M, G, N) for GEMMs."""
    if gemm:
        return (s.B, s.G, s.Ng), (s.OC, 1, 0)
    return (s.B, s.OC, s.OH, s.OW), (s.OC * s.L, s.L, 1)


def _alloc_out(s: ConvShape, gemm: bool, dequant: bool, device):
    shape, strides = _out_layout(s, gemm)
    dtype = torch.float32 if dequant else torch.int64
    return torch.empty(shape, dtype=dtype, device=device), strides


@dataclass
class Epilogue:
    """Per-column epilogue operands, padded to (G*NP,)."""

    colc: torch.Tensor          # int64: constant per output column
    nw: torch.Tensor            # int64: weight zero points
    scale: torch.Tensor | None  # float64 s_a*s_w (fused dequantisation) or None
    bias: torch.Tensor | None   # float32 (OC,) unpadded, or None


def column_epilogue(qw: torch.Tensor, s: ConvShape, NP: int, n_a: int, w_off: int,
                    n_w: torch.Tensor, cconst: int, beta: torch.Tensor | None = None,
                    s_a=None, s_w=None, bias=None) -> Epilogue:
    """One kernel: colc = cconst + sum_k beta(w) + n_a*sum_k w + K*n_a*n_w, n_w, s_a*s_w."""
    dev = qw.device
    G = s.G
    colc = torch.empty(G * NP, dtype=torch.int64, device=dev)
    nwo = torch.empty(G * NP, dtype=torch.int64, device=dev)
    scale = None if s_a is None else torch.empty(G * NP, dtype=torch.float64, device=dev)
    if s_a is not None:
        s_a = s_a.to(dev).reshape(1).float().contiguous()
        s_w = s_w.to(dev).reshape(-1).float().contiguous()
    BN = 32
    kernels().prep_cols_kernel[(G, triton_cdiv(NP, BN))](
        qw, n_w, beta if beta is not None else _dummy(dev), s_a if s_a is not None else
        _dummy(dev, torch.float32), s_w if s_w is not None else _dummy(dev, torch.float32),
        colc, nwo, scale if scale is not None else _dummy(dev, torch.float64),
        s.K, s.Ng, NP, s.Cg, s.kh * s.kw, w_off, n_a, int(cconst),
        BN=BN, BK=128, HAS_BETA=beta is not None, SCALE=scale is not None,
        SW_VEC=s_w is not None and s_w.numel() > 1, num_warps=4)
    if bias is not None:
        bias = bias.to(dev).float().contiguous()
    return Epilogue(colc, nwo, scale, bias)


def gemm_weights_as_conv(w_idx: torch.Tensor) -> torch.Tensor:
    """(G, K, N) weight indices -> float 'codes' (G*N, K, 1, 1) for the conv path (offset 0)."""
    G, K, N = w_idx.shape
    return w_idx.permute(0, 2, 1).reshape(G * N, K, 1, 1).float().contiguous()


# --------------------------------------------------------------------------------------------
# LUT kernels

def lut_table16(table: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The LUT as int16 (table - mid) and mid (every <=8x8-bit LUT spans at most 2^16 values)."""
    t = table.to(torch.int32)
    tmin, tmax = int(t.min()), int(t.max())
    if tmax - tmin > 65535:
        raise ValueError("LUT values span more than 16 bits")
    mid = tmin + 32768
    return (t - mid).to(torch.int16).contiguous(), mid


_LUT16_CACHE: dict = {}


def cached_lut16(table: torch.Tensor) -> tuple[torch.Tensor, int]:
    """lut_table16 of a LUT tensor, cached by identity (layers keep their LUT buffers)."""
    import weakref

    key = (table.data_ptr(), table._version, tuple(table.shape), str(table.device))
    hit = _LUT16_CACHE.get(key)
    if hit is not None and hit[0]() is table:
        return hit[1], hit[2]
    t16, mid = lut_table16(table)
    if len(_LUT16_CACHE) > 64:
        _LUT16_CACHE.clear()
    _LUT16_CACHE[key] = (weakref.ref(table), t16, mid)
    return t16, mid


def lut_mode(s: ConvShape, R: int) -> str:
    if FORCE_MODE is not None:
        return FORCE_MODE
    NP = padded_n(s.Ng)
    if s.M < 32:
        return "direct"
    if s.G * s.K * R * NP * 2 <= TAP_TABLE_MAX or s.G == 1:
        return "tap"
    return "direct"


def run_lut_conv(a_nhwc, qw, lut16: torch.Tensor, mid: int, s: ConvShape, n_a: int, a_off: int,
                 w_off: int, pad_idx: int, n_w: torch.Tensor, *, s_a=None, s_w=None, bias=None,
                 gemm: bool = False, mode: str | None = None):
    """LUT conv/GEMM through the per-tap or direct kernel; int64 or fused float32 output.
    Per-tap tables over TAP_TABLE_MAX are used in chunks of output channels (groups == 1)."""
    dev = a_nhwc.device
    R = lut16.shape[0]
    mode = mode or lut_mode(s, R)
    out, strides = _alloc_out(s, gemm, s_a is not None, dev)
    if out.numel() == 0:
        return out
    per_col = s.K * R * 2
    if mode == "tap" and s.G == 1 and s.OC > 16 and padded_n(s.OC) * per_col > TAP_TABLE_MAX:
        step = max(16, (TAP_TABLE_MAX // per_col) // 64 * 64)
    else:
        step = s.OC
    sw_vec = s_w is not None and s_w.numel() > 1
    for n0 in range(0, s.OC, step):
        n1 = min(s.OC, n0 + step)
        sub = s if (n0, n1) == (0, s.OC) else ConvShape(
            s.B, s.C, s.H, s.W, n1 - n0, 1, s.kh, s.kw, s.OH, s.OW, s.stride, s.padding, s.dilation)
        view = out if sub is s else (out[:, :, n0:n1] if gemm else out[:, n0:n1])
        _run_lut_chunk(a_nhwc, qw[n0:n1], lut16, mid, sub, n_a, a_off, w_off, pad_idx,
                       n_w[n0:n1], view, strides, mode,
                       s_a=s_a, s_w=(s_w.reshape(-1)[n0:n1] if sw_vec else s_w),
                       bias=None if bias is None else bias[n0:n1])
    return out


def _run_lut_chunk(a_nhwc, qw, lut16, mid, s, n_a, a_off, w_off, pad_idx, n_w, out, strides,
                   mode, *, s_a=None, s_w=None, bias=None):
    k = kernels()
    dev = a_nhwc.device
    R, CW = lut16.shape
    G, K, Ng = s.G, s.K, s.Ng
    NP = padded_n(Ng)
    qw = qw.contiguous()
    ep = column_epilogue(qw, s, NP, n_a, w_off, n_w.contiguous(), K * mid, None, s_a, s_w, bias)
    koff, kdy, kdx = geometry_tables(s, dev)
    direct = mode == "direct"
    RB = 32
    if direct:
        tab = torch.empty((G, K, NP), dtype=torch.uint8, device=dev)
        grid_p = (K, G, 1)
    else:
        tab = torch.empty((G, K, R, NP), dtype=torch.int16, device=dev)
        grid_p = (K, G, triton_cdiv(R, RB))
    k.prep_lut_kernel[grid_p](qw, lut16, tab, K, Ng, NP, R, CW, s.Cg, s.kh * s.kw, w_off,
                              BN=min(NP, 64), RB=RB, DIRECT=direct, num_warps=4)
    cfg = CONFIG["direct" if direct else "lut"]
    BN = cfg["BN"] or min(NP, 64)
    BM = cfg["BM"] or (128 if BN <= 32 else 64)
    sb, sn, sl = strides
    grid = (triton_cdiv(s.M, BM), NP // BN, G)
    k.lut_kernel[grid](
        a_nhwc, lut16 if direct else tab, tab if direct else _dummy(dev, torch.uint8),
        koff, kdy, kdx, ep.colc, ep.nw,
        ep.scale if ep.scale is not None else _dummy(dev, torch.float64),
        ep.bias if ep.bias is not None else _dummy(dev, torch.float32), out,
        s.M, K, Ng, NP, R, CW, s.H, s.W, s.C, s.Cg, s.OH, s.OW, s.stride[0], s.stride[1],
        s.padding[0], s.padding[1], pad_idx, a_off, sb, sn, sl,
        BM=BM, BN=BN, DIRECT=direct, DEQUANT=ep.scale is not None,
        HAS_BIAS=ep.bias is not None, ACC64=K * 32768 >= (1 << 31), UNROLL=cfg["unroll"],
        num_warps=cfg["num_warps"])


def run_dw_conv(a_nhwc, qw, table16: torch.Tensor, mid: int, s: ConvShape, n_a: int, a_off: int,
                w_off: int, pad_idx: int, n_w: torch.Tensor, *, s_a=None, s_w=None, bias=None):
    """Grouped conv with one input channel per group (depthwise, channel multipliers)."""
    k = kernels()
    dev = a_nhwc.device
    OC, K = s.OC, s.K
    R, CW = table16.shape
    # per output channel = one 'group' of one column for the epilogue kernel
    s1 = ConvShape(s.B, OC, s.H, s.W, OC, OC, s.kh, s.kw, s.OH, s.OW, s.stride, s.padding,
                   s.dilation)
    ep = column_epilogue(qw, s1, 1, n_a, w_off, n_w, K * mid, None, s_a, s_w, bias)
    out, (sb, sn, sl) = _alloc_out(s, False, s_a is not None, dev)
    if out.numel() == 0:
        return out
    widx = (qw.reshape(OC, K) + w_off).to(torch.uint8)
    koff, kdy, kdx = geometry_tables(s, dev)
    cfg = CONFIG["dw"]
    BM, BO = cfg["BM"], cfg["BO"]
    grid = (triton_cdiv(s.M, BM), triton_cdiv(OC, BO))
    k.dw_kernel[grid](
        a_nhwc, table16, widx, koff, kdy, kdx, ep.colc, ep.nw,
        ep.scale if ep.scale is not None else _dummy(dev, torch.float64),
        ep.bias if ep.bias is not None else _dummy(dev, torch.float32), out,
        s.M, K, OC, s.Ng, CW, s.H, s.W, s.C, s.OH, s.OW, s.stride[0], s.stride[1],
        s.padding[0], s.padding[1], pad_idx, a_off, sb, sn, sl,
        BM=BM, BO=BO, DEQUANT=ep.scale is not None, HAS_BIAS=ep.bias is not None,
        UNROLL=cfg["unroll"], num_warps=cfg["num_warps"])
    return out


# --------------------------------------------------------------------------------------------
# tensor-core kernel for factorised products (shared with the decomposed backend)

@dataclass
class DeviceFactorisation:
    """A Factorisation's tables on one device, terms grouped in scale classes."""

    U: torch.Tensor        # int8 (T, R)
    Vtab: torch.Tensor     # int8 (T, CW)
    alpha: torch.Tensor    # int64 (R,)
    beta: torch.Tensor     # int64 (CW,)
    classes: list[tuple[int, int]]   # (number of terms, scale), in term order
    has_alpha: bool
    bound: list[int]       # per class: sum over its terms of max|U| * max|V|

    @classmethod
    def build(cls, f, device) -> "DeviceFactorisation":
        import numpy as np

        terms = sorted(f.terms, key=lambda t: t.scale)
        classes: list[tuple[int, int]] = []
        bound: list[int] = []
        for t in terms:
            mu = int(np.abs(t.u).max()) * int(np.abs(t.v).max())
            if classes and classes[-1][1] == t.scale:
                classes[-1] = (classes[-1][0] + 1, t.scale)
                bound[-1] += mu
            else:
                classes.append((1, t.scale))
                bound.append(mu)
        R, CW = len(f.alpha), len(f.beta)
        if terms:
            U = torch.tensor(np.stack([t.u for t in terms]), dtype=torch.int8)
            V = torch.tensor(np.stack([t.v for t in terms]), dtype=torch.int8)
        else:
            U = torch.zeros((0, R), dtype=torch.int8)
            V = torch.zeros((0, CW), dtype=torch.int8)
        return cls(U.to(device).contiguous(), V.to(device).contiguous(),
                   torch.tensor(f.alpha, dtype=torch.int32 if int(np.abs(f.alpha).max(initial=0))
                                < (1 << 24) else torch.int64).to(device),
                   torch.tensor(f.beta, dtype=torch.int64).to(device), classes,
                   bool(np.any(f.alpha)), bound)


def run_tc_conv(a_nhwc: torch.Tensor, qw: torch.Tensor, df: DeviceFactorisation, s: ConvShape,
                n_a: int, a_off: int, w_off: int, pad_idx: int, n_w: torch.Tensor, *,
                s_a=None, s_w=None, bias=None, gemm: bool = False):
    """sum_t s_t U_t(A) @ V_t(W) + alpha/beta + cross terms on int8 tensor cores."""
    k = kernels()
    dev = a_nhwc.device
    G, K, Ng = s.G, s.K, s.Ng
    cfg = CONFIG["tc"]
    BK = cfg["BK"]
    NP = padded_n(Ng, 128 if Ng > 64 else 64)
    BN = cfg["BN"] or (NP if NP <= 128 else (128 if NP % 128 == 0 else 64))
    BM = cfg["BM"]
    KP = triton_cdiv(K, BK) * BK
    T = df.U.shape[0]
    CW = df.Vtab.shape[1]
    V = torch.empty((max(T, 1), G, KP, NP), dtype=torch.int8, device=dev)
    if T:
        k.prep_tc_kernel[(KP, G)](qw, df.Vtab, V, K, KP, Ng, NP, CW, s.Cg, s.kh * s.kw, w_off,
                                 G * KP * NP, T=T, BN=min(NP, 128), num_warps=4)
    else:
        V.zero_()
    ep = column_epilogue(qw, s, NP, n_a, w_off, n_w, 0, df.beta, s_a, s_w, bias)
    koff, kdy, kdx = geometry_tables(s, dev, pad_to=BK)
    classes = list(df.classes)
    wide = any(K * b >= (1 << 31) for b in df.bound)
    chunks = [classes[i:i + 4] for i in range(0, len(classes), 4)] or [[]]
    fuse = ep.scale is not None and len(chunks) == 1
    out_final = None
    t0 = 0
    for ci, chunk in enumerate(chunks):
        first = ci == 0
        counts = [c for c, _ in chunk] + [0] * (4 - len(chunk))
        scales = [sc for _, sc in chunk] + [1] * (4 - len(chunk))
        n_terms = sum(counts)
        out, (sb, sn, sl) = _alloc_out(s, gemm, fuse, dev)
        if out.numel() == 0:
            return out
        colc_ = ep.colc if first else torch.zeros_like(ep.colc)
        nw_ = ep.nw if first else torch.zeros_like(ep.nw)
        Ut = df.U[t0:t0 + n_terms] if n_terms else _dummy(dev, torch.int8)
        Vt = V[t0:t0 + max(n_terms, 1)]
        grid = (triton_cdiv(s.M, BM), NP // BN, G)
        k.tc_kernel[grid](
            a_nhwc, Ut, Vt, df.alpha, koff, kdy, kdx, colc_, nw_,
            ep.scale if fuse else _dummy(dev, torch.float64),
            ep.bias if (fuse and ep.bias is not None) else _dummy(dev, torch.float32), out,
            scales[0], scales[1], scales[2], scales[3],
            s.M, K, Ng, NP, df.U.shape[1], s.H, s.W, s.C, s.Cg, s.OH, s.OW, s.stride[0],
            s.stride[1], s.padding[0], s.padding[1], pad_idx, a_off,
            G * KP * NP, KP * NP, sb, sn, sl,
            T0=counts[0], T1=counts[1], T2=counts[2], T3=counts[3],
            HAS_ALPHA=df.has_alpha and first, BM=BM, BN=BN, BK=BK,
            DEQUANT=fuse, HAS_BIAS=fuse and ep.bias is not None, WIDE=wide,
            num_warps=cfg["num_warps"] if BN <= 64 else 8, num_stages=cfg["num_stages"])
        out_final = out if out_final is None else out_final.add_(out)
        t0 += n_terms
    if ep.scale is not None and not fuse:
        out_final = dequant_torch(out_final, ep.scale.reshape(G, NP)[:, :Ng].reshape(-1),
                                  bias, gemm)
    return out_final


def intmm_gemm(a_idx: torch.Tensor, w_idx: torch.Tensor, df: DeviceFactorisation) -> torch.Tensor:
    """Plain LUT GEMM (M, K) x (K, N) table indices -> int64 (M, N) through cuBLAS int8 GEMMs
    (``torch._int_mm``), one per factorisation term; for large GEMMs, where the glue (one
    gather per operand element and term) is cheap next to the GEMM."""
    M, K = a_idx.shape
    N = w_idx.shape[1]
    dev = a_idx.device
    KP, NP = -(-K // 8) * 8, -(-N // 8) * 8
    ai = a_idx.to(torch.int64)
    wi = w_idx.to(torch.int64)
    res = torch.zeros((M, N), dtype=torch.int64, device=dev)
    t0 = 0
    for count, scale in df.classes:
        part = None
        for t in range(t0, t0 + count):
            A = df.U[t][ai]
            V = df.Vtab[t][wi]
            if KP != K:
                A = torch.nn.functional.pad(A, (0, KP - K))
                V = torch.nn.functional.pad(V, (0, 0, 0, KP - K))
            if NP != N:
                V = torch.nn.functional.pad(V, (0, NP - N))
            C = torch._int_mm(A.contiguous(), V.t().contiguous().t())[:, :N]
            part = C.to(torch.int64) if part is None else part.add_(C)
        res += part * scale if scale != 1 else part
        t0 += count
    if df.has_alpha:
        res += df.alpha.to(torch.int64)[ai].sum(dim=1, keepdim=True)
    res += df.beta[wi].sum(dim=0, keepdim=True)
    return res


def dequant_torch(acc: torch.Tensor, scale: torch.Tensor, bias, gemm: bool) -> torch.Tensor:
    """The unfused dequantisation (same operations as :func:`axcnn.ops.functional._dequant_acc`)."""
    shape = (1, -1) if gemm else (1, -1, 1, 1)
    if gemm:
        y = (acc.reshape(acc.shape[0], -1).double() * scale.view(*shape)).float().reshape(acc.shape)
    else:
        y = (acc.double() * scale.view(*shape)).float()
    if bias is not None:
        y = y + (bias.float().view(1, *acc.shape[1:]) if gemm else bias.float().view(1, -1, 1, 1))
    return y


def exact_factorisation(a_signed: bool, w_signed: bool):
    """Factorisation of the exact 8x8 product for the given code ranges (cached)."""
    key = (a_signed, w_signed)
    hit = _EXACT_CACHE.get(key)
    if hit is None:
        import numpy as np

        from .gpu.factor import compile_terms, operand_values

        av, wv = operand_values(8, a_signed), operand_values(8, w_signed)
        hit = compile_terms([(av, wv)], np.zeros(256, np.int64), np.zeros(256, np.int64),
                            "exact-product", 0)
        assert np.array_equal(hit.reconstruct(), np.outer(av, wv))
        _EXACT_CACHE[key] = hit
    return hit


_EXACT_CACHE: dict = {}
_DEV_EXACT: dict = {}


def exact_device_factorisation(a_signed: bool, w_signed: bool, device) -> DeviceFactorisation:
    key = (a_signed, w_signed, str(device))
    hit = _DEV_EXACT.get(key)
    if hit is None:
        hit = DeviceFactorisation.build(exact_factorisation(a_signed, w_signed), device)
        _DEV_EXACT[key] = hit
    return hit


def code_signedness(p: IntConvProblem) -> tuple[bool, bool]:
    """(activations signed, weights signed) for exact products: from the problem if it says
    (``p.signed``), else from the code ranges (one small device sync)."""
    flag = getattr(p, "signed", None)
    if flag is not None:
        return bool(flag), bool(flag)
    mins = torch.stack([p.qa.min() if p.qa.numel() else p.qa.new_zeros(()),
                        p.qw.min() if p.qw.numel() else p.qw.new_zeros(())]).tolist()
    return mins[0] < 0, mins[1] < 0


# --------------------------------------------------------------------------------------------
# the backend

class TritonBackend(TorchBackend):
    kind = Backend.TRITON

    def supports(self, device: torch.device) -> str | None:
        return device_ok(torch.device(device))

    # ---- forward ---------------------------------------------------------------------------
    def conv2d_acc(self, p: IntConvProblem) -> torch.Tensor:
        return self._forward(p, None, None, None)

    def conv2d_dequant(self, p: IntConvProblem, s_a: torch.Tensor, s_w: torch.Tensor,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
        """float32 output = float32(float64(acc) * s_a * s_w) (+ bias), fused in the epilogue."""
        return self._forward(p, s_a, s_w, bias)

    def _forward(self, p: IntConvProblem, s_a, s_w, bias):
        s = ConvShape.of(p)
        n_a, n_w = zero_points(p)
        if p.table is None:
            a_signed, w_signed = code_signedness(p)
            a_off, w_off = (128 if a_signed else 0), (128 if w_signed else 0)
        else:
            a_off, w_off = int(p.a_offset), int(p.w_offset)
        pad_idx = -n_a + a_off
        a_nhwc = activation_index(p.qa, a_off)
        qw = p.qw.float().contiguous()
        kw = dict(s_a=s_a, s_w=s_w, bias=bias)
        if s.Cg == 1 and s.G > 1:
            if p.table is None:
                table16, mid = exact_table16(a_signed, w_signed, a_nhwc.device)
            else:
                table16, mid = cached_lut16(p.table)
            return run_dw_conv(a_nhwc, qw, table16, mid, s, n_a, a_off, w_off, pad_idx, n_w, **kw)
        if p.table is None:
            df = exact_device_factorisation(a_signed, w_signed, a_nhwc.device)
            return run_tc_conv(a_nhwc, qw, df, s, n_a, a_off, w_off, pad_idx, n_w, **kw)
        lut16, mid = cached_lut16(p.table)
        return run_lut_conv(a_nhwc, qw, lut16, mid, s, n_a, a_off, w_off, pad_idx, n_w, **kw)

    def lut_gemm(self, a_idx, w_idx, table):
        M, G, K = a_idx.shape
        N = w_idx.shape[2]
        if table.shape[0] > 256 or table.shape[1] > 256:
            return super().lut_gemm(a_idx, w_idx, table)
        try:
            lut16, mid = cached_lut16(table)
        except ValueError:
            return super().lut_gemm(a_idx, w_idx, table)
        s = ConvShape.gemm(M, G, K, N)
        dev = a_idx.device
        a8 = a_idx.reshape(M, G * K).to(torch.uint8).contiguous()
        zeros = torch.zeros(G * N, dtype=torch.float32, device=dev)
        return run_lut_conv(a8, gemm_weights_as_conv(w_idx), lut16, mid, s, 0, 0, 0, 0, zeros,
                            gemm=True)

    # ---- error-aware backward ---------------------------------------------------------------
    def error_aware_grads(self, p: IntConvProblem, grad_y, s_a, s_w, grad_a, grad_w,
                          need_x: bool, need_w: bool):
        s = ConvShape.of(p)
        R = grad_a.shape[0]
        NP = padded_n(s.Ng, 16)
        if NP > 128 or s.G * s.K * R * NP * 4 > GRAD_TABLE_MAX:
            return super().error_aware_grads(p, grad_y, s_a, s_w, grad_a, grad_w, need_x, need_w)
        k = kernels()
        dev = p.qa.device
        G, K, Ng, M = s.G, s.K, s.Ng, s.M
        a_off, w_off = int(p.a_offset), int(p.w_offset)
        n_a_f = float(p.n_a)
        pad_idx = -int(round(n_a_f)) + a_off
        a_nhwc = activation_index(p.qa, a_off)
        w_idx = weight_index(p.qw, G, w_off)
        wpad = torch.zeros((G, K, NP), dtype=torch.int64, device=dev)
        wpad[:, :, :Ng] = w_idx
        koff, kdy, kdx = geometry_tables(s, dev)
        gy = grad_y.permute(0, 2, 3, 1).reshape(M, G, Ng).float()
        geo = (s.H, s.W, s.C, s.Cg, s.OH, s.OW, s.stride[0], s.stride[1], s.padding[0],
               s.padding[1], pad_idx)
        gx = gw = None
        if need_x:
            s_w_g = (s_w.reshape(G, Ng).float() if s_w.ndim else s_w.float().expand(G, Ng)).to(dev)
            gs = torch.zeros((M, G, NP), dtype=torch.float32, device=dev)
            gs[:, :, :Ng] = gy * s_w_g[None]
            nw = torch.zeros((G, NP), dtype=torch.float32, device=dev)
            nw[:, :Ng] = p.n_w.reshape(-1).to(dev).float().expand(G * Ng).reshape(G, Ng)
            ta = grad_a.float().t().contiguous()[wpad.reshape(-1)].reshape(G, K, NP, R)
            ta = ta.transpose(2, 3).contiguous()
            gp = torch.empty((G, K, M), dtype=torch.float32, device=dev)
            BM = 64 if NP <= 32 else 32
            k.ea_gx_kernel[(triton_cdiv(M, BM), G)](
                a_nhwc, ta, gs, nw.reshape(-1), gp, koff, kdy, kdx, M, K, G, NP, R, *geo,
                BM=BM, BN=NP, UNROLL=CONFIG["ea_gx"]["unroll"], num_warps=4)
            del ta
            cols = (gp.reshape(G, s.kh, s.kw, s.Cg, s.B, s.L).permute(4, 0, 3, 1, 2, 5)
                    .reshape(s.B, s.C * s.kh * s.kw, s.L))
            gx = F.fold(cols, (s.H, s.W), (s.kh, s.kw), dilation=s.dilation, padding=s.padding,
                        stride=s.stride)
        if need_w:
            gyp = torch.zeros((M, G, NP), dtype=torch.float32, device=dev)
            gyp[:, :, :Ng] = gy
            tw = grad_w.float().t().contiguous()[wpad.reshape(-1)].reshape(G, K, NP, R)
            tw = tw.transpose(2, 3).contiguous()
            BM, BKK = 64, 16
            kblocks = triton_cdiv(K, BKK)
            S = max(1, min(triton_cdiv(528, kblocks * G), triton_cdiv(M, BM * 4)))
            m_per = triton_cdiv(triton_cdiv(M, S), BM) * BM
            S = triton_cdiv(M, m_per)
            part = torch.zeros((S, G, K, NP), dtype=torch.float32, device=dev)
            k.ea_gw_kernel[(kblocks, S, G)](
                a_nhwc, tw, gyp, part, koff, kdy, kdx, M, K, G, NP, R, *geo, m_per,
                BM=BM, BN=NP, BKK=BKK, num_warps=4)
            del tw
            gwt = part.sum(dim=0)[:, :, :Ng]
            gwt += n_a_f * gy.sum(dim=0)[:, None, :]
            gwt *= s_a
            gw = (gwt.reshape(G, s.kh, s.kw, s.Cg, Ng).permute(0, 4, 3, 1, 2)
                  .reshape(s.OC, s.Cg, s.kh, s.kw))
        return gx, gw


def exact_table16(a_signed: bool, w_signed: bool, device):
    key = ("t16", a_signed, w_signed, str(device))
    hit = _DEV_EXACT.get(key)
    if hit is None:
        av = torch.arange(256, dtype=torch.int32) - (128 if a_signed else 0)
        wv = torch.arange(256, dtype=torch.int32) - (128 if w_signed else 0)
        hit = lut_table16(torch.outer(av, wv))
        hit = (hit[0].to(device), hit[1])
        _DEV_EXACT[key] = hit
    return hit


# --------------------------------------------------------------------------------------------
# operand statistics

def tap_histogram(qa: torch.Tensor, w_shape, groups: int, geometry, a_bits: int, a_off: int,
                  n_a: float) -> torch.Tensor:
    """int64 (G, K, R) counts of activation indices per tap (taps in F.unfold's (c, ky, kx)
    order, padding taps counted with the index of real zero)."""
    OC, Cg, kh, kw = w_shape
    B, C, H, W = qa.shape
    oh, ow = geometry.output_hw(H, W, kh, kw)
    s = ConvShape(B, C, H, W, OC, groups, kh, kw, oh, ow, tuple(geometry.stride),
                  tuple(geometry.padding), tuple(geometry.dilation))
    R = 1 << a_bits
    dev = qa.device
    pad_idx = -int(round(float(n_a))) + a_off
    a_nhwc = activation_index(qa, a_off)
    koff, kdy, kdx = geometry_tables(s, dev)
    hist = torch.zeros((s.G, s.K, R), dtype=torch.int32, device=dev)
    m_per = 8192
    if s.M:
        kernels().tap_hist_kernel[(s.K, triton_cdiv(s.M, m_per), s.G)](
            a_nhwc, hist, koff, kdy, kdx, s.M, s.K, R, s.H, s.W, s.C, s.Cg, s.OH, s.OW,
            s.stride[0], s.stride[1], s.padding[0], s.padding[1], pad_idx, m_per,
            BM=1024, RB=R, num_warps=4)
    return (hist.to(torch.int64).reshape(s.G, kh, kw, s.Cg, R).permute(0, 3, 1, 2, 4)
            .reshape(s.G, s.K, R))


register_backend(Backend.TRITON)(TritonBackend)
