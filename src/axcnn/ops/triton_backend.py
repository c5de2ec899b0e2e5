"""The ``triton`` backend: fused GPU kernels for approximate (LUT) and exact quantized convs.

Everything is compiled at run time by Triton (no CUDA toolkit, no build step). Kernels live in
:mod:`axcnn.ops.gpu.kernels`; this module prepares operands and launches them.

Forward (``conv2d_acc``, ``conv2d_dequant``, ``lut_gemm``):

- the kernels read the float activation codes as they come (any strides) and do the im2col
  themselves (implicit GEMM); padding taps read the index of the code of real zero
  (``CONFIG[kind]["a_index"]`` makes a kernel kind read uint8 NHWC indices from a separate
  pass instead);
- LUT products on CUDA cores with int32 accumulators:
  *per-tap tables* T[g, k, v, n] = LUT[v, w[g, k, n]] - mid (int16, G*K*R*Np entries, built
  from the weights) turn every (output row, tap) into one contiguous row read -- no random
  shared-memory lookups and no bank conflicts; when these tables would be too large for
  grouped convs the *direct* kernel gathers LUT[a, w] from a 16-bit LUT that stays in L1;
  depthwise/channel-multiplier convs have their own kernel;
- factorised products on int8 tensor cores (the decomposed backend's kernel): one pass maps
  the activations, zero-padded by the convolution's padding, to int8 NHWC maps U_t(a) per
  term (and per-pixel sums of the codes and of the row function), then an implicit GEMM whose
  K tiles are channel-contiguous runs of one tap (vector loads, no gathers and no masks in
  the main loop);
- exact products (quantized mode, ``table is None``) run on int8 tensor cores through the
  same kernel with the one-term factorisation of the exact product;
- the zero-point cross terms and, in ``conv2d_dequant``, the dequantisation and bias are fused
  into the epilogue with the same IEEE operations as the unfused path (bit-identical output).

Per call, a LUT conv is then one kernel launch when its weight side is cached (see below), two
when it is not (weight prep + main kernel); the tensor-core path adds the activation map pass.

Weight-side cache (inference). Everything derived from the weights alone -- the per-tap tables,
uint8 weight indices or int8 maps V_t(W), and the per-column sums ``colw``/``wsum`` -- is kept
per backend instance in a :class:`WeightCache`, keyed by the identity of the weight tensor
(``IntConvProblem.qw``; ``w_idx`` for ``lut_gemm``), its ``_version`` and data pointer, the LUT
(identity of its int16 copy) or factorisation, offsets and shape. A tensor is stored the second
time it is seen unchanged (a training step quantizes fresh weights each call and never fills
the cache), never when it requires grad or is an inference tensor (no version counter), and
the cache is bounded (:data:`WEIGHT_CACHE_MAX`, :data:`WEIGHT_CACHE_ENTRY_MAX`); entries go
when their tensor is freed or modified in place. Zero points, scales and bias are never
cached: they are read by the main kernel on every call. Results are identical with and
without the cache (``WEIGHT_CACHE = False`` switches it off).

Host synchronisation in the forward path: none for LUT problems (n_a is a Python number
turned into a cached one-element device tensor, or a device tensor used as is). Exceptions:
the first use of a LUT tensor (:func:`lut_table16` reads its range), and exact products
(``table is None``) on problems without a ``signed`` attribute (:func:`code_signedness`
reads the code minima).

Backward (error-aware rule, ``error_aware_grads``): per-tap tables of the gradient tables, one
contiguous row per (activation index, tap) again, holding the int16 numerators of the
tables (:class:`GradFractions`; divided by the window width once per sum) or, where those do
not fit, the float32 values; the input gradient is summed per input pixel over the taps that
read it, a block of channels per program (no col2im), the weight gradient for a block of taps
per program over split row ranges, reduced once; no host sync either (the padding index is
read from the device; the fraction form is checked once per LUT tensor and cached).
Problems whose per-tap gradient tables exceed :data:`GRAD_TABLE_MAX` use the torch backend's
chunked gather (exact same formulas). STE gradients are cuDNN convolutions (functional layer).

``supports`` returns a reason on machines without CUDA or Triton; with ``TRITON_INTERPRET=1``
the kernels also run on CPU tensors through Triton's interpreter (used by the CPU tests).
"""

from __future__ import annotations

import functools
import os
import weakref
from dataclasses import dataclass, replace

import torch

from .backends import Backend, cache_freed, register_backend
from .problem import IntConvProblem
from .torch_backend import TorchBackend, memo_per_tensors, table_range

#: per-tap LUT tables up to this size (bytes) are built whole; larger ones are built and used
#: in chunks of output channels (groups == 1) or, for grouped convs, use the direct kernel
TAP_TABLE_MAX = 1 << 30
#: force the LUT kernel ("tap" or "direct"; tests and benchmarks), None: automatic
FORCE_MODE: str | None = None
#: per-tap gradient tables larger than this (bytes) fall back to the torch backend's gathers
GRAD_TABLE_MAX = 160 << 20
#: weight-side cache switch and bounds (bytes per backend instance / per entry)
WEIGHT_CACHE = True
WEIGHT_CACHE_MAX = 1 << 30
WEIGHT_CACHE_ENTRY_MAX = 256 << 20
#: kernel configuration overrides (benchmarks sweep these); ``a_index``: read uint8 NHWC
#: indices from a separate pass instead of the float codes
CONFIG: dict[str, dict] = {
    "lut": {"BM": None, "BN": None, "num_warps": 4, "unroll": 4, "a_index": False},
    "direct": {"BM": 64, "BN": None, "num_warps": 4, "unroll": 4},
    "dw": {"BM": 64, "BO": 32, "num_warps": 4, "unroll": 3, "a_index": False},
    "ea_gx": {"BM": 16, "BC": 8, "num_warps": 8},
    "ea_gw": {"BM": 16, "BKK": 8, "num_warps": 8, "programs": 1056},
    "tc": {"BM": 64, "BN": None, "BK": 128, "num_warps": 4, "num_stages": 3, "a_index": False,
           "split": True, "packed_below": 16, "map_ch_tiles": 8},
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


_KERNELS: list = []


def kernels():
    """The Triton kernel module (imports Triton on first use)."""
    if not _KERNELS:
        from .gpu import kernels as k
        _KERNELS.append(k)
    return _KERNELS[0]


def device_ok(device: torch.device) -> str | None:
    """None if the Triton kernels can run on ``device``; Triton is imported only for CUDA
    devices (or the CPU under TRITON_INTERPRET=1), so CPU-only use never loads it."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
    elif not (device.type == "cpu" and interpreting()):
        return f"Triton kernels need a CUDA device (got {device})"
    return triton_status()


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------------------------
# shapes and geometry

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
        """The shape of a problem (cached per (activation shape, weight shape, geometry))."""
        return _conv_shape(tuple(p.qa.shape), tuple(p.qw.shape), p.geometry)

    @classmethod
    def gemm(cls, M: int, G: int, K: int, N: int) -> "ConvShape":
        return _gemm_shape(M, G, K, N)


@functools.lru_cache(maxsize=1024)
def _conv_shape(a_shape, w_shape, g) -> ConvShape:
    B, C, H, W = a_shape
    OC, _, kh, kw = w_shape
    oh, ow = g.output_hw(H, W, kh, kw)
    return ConvShape(B, C, H, W, OC, g.groups, kh, kw, oh, ow, tuple(g.stride),
                     tuple(g.padding), tuple(g.dilation))


@functools.lru_cache(maxsize=256)
def _gemm_shape(M: int, G: int, K: int, N: int) -> ConvShape:
    return ConvShape(M, G * K, 1, 1, G * N, G, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1))


@functools.lru_cache(maxsize=256)
def _dw_shape(s: ConvShape) -> ConvShape:
    """The depthwise problem as OC groups of one output column each (weight-side layout)."""
    return ConvShape(s.B, s.OC, s.H, s.W, s.OC, s.OC, s.kh, s.kw, s.OH, s.OW, s.stride,
                     s.padding, s.dilation)


def padded_n(ng: int, block: int = 64) -> int:
    """Columns per group as stored: a power of two (at least 16) up to ``block`` (itself a
    power of two), a multiple of ``block`` above it; so every column block the kernels take
    (a power of two, as ``tl.arange`` needs, up to ``block``) divides it."""
    np_ = max(16, 1 << max(0, ng - 1).bit_length())
    if np_ > block:
        np_ = -(-ng // block) * block
    return np_


_GEOM_CACHE: dict = {}


def geometry_tables(s: ConvShape, device: torch.device, strides=None, pad_to: int = 1):
    """int32 koff, kdy, kdx per tap k = (ky, kx, c), zero-padded to a multiple of ``pad_to``.

    koff is the element offset of the tap relative to the window origin for activation
    element strides ``strides`` = (channel, row, column); default: contiguous NHWC (the
    layout of :func:`activation_index`)."""
    if strides is None:
        strides = (1, s.W * s.C, s.C)
    key = (s.kh, s.kw, s.Cg, s.dilation, tuple(strides), device, pad_to)
    hit = _GEOM_CACHE.get(key)
    if hit is not None:
        return hit
    sc, sh, sw = strides
    dh, dw = s.dilation
    ky = torch.arange(s.kh).view(-1, 1, 1)
    kx = torch.arange(s.kw).view(1, -1, 1)
    c = torch.arange(s.Cg).view(1, 1, -1)
    koff = (ky * dh * sh + kx * dw * sw + c * sc).reshape(-1)
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
        cache_freed()
    _GEOM_CACHE[key] = out
    return out


# --------------------------------------------------------------------------------------------
# small device constants (built once per device: no allocation or copy per call)

_CONST: dict = {}


def _dummy(device, dtype=torch.int64) -> torch.Tensor:
    """A one-element zero tensor for unused pointer arguments (never written)."""
    key = ("dummy", device, dtype)
    hit = _CONST.get(key)
    if hit is None:
        hit = _CONST[key] = torch.zeros(1, dtype=dtype, device=device)
    return hit


def _na_tensor(n_a, device) -> torch.Tensor:
    """n_a as a one-element int64 device tensor: a cached constant for a Python number,
    ``round(n_a)`` computed on the device (no host sync) for a tensor."""
    if isinstance(n_a, torch.Tensor):
        return n_a.reshape(1).to(device).round().to(torch.int64)
    key = ("n_a", int(round(float(n_a))), device)
    hit = _CONST.get(key)
    if hit is None:
        if len(_CONST) > 4096:
            _CONST.clear()
            cache_freed()
        hit = _CONST[key] = torch.full((1,), key[1], dtype=torch.int64, device=device)
    return hit


# --------------------------------------------------------------------------------------------
# activation operand

@dataclass(slots=True)
class ActOperand:
    """Activations as the forward kernels read them: element (b, c, h, w) is
    ``t[b*sb + c*sc + h*sh + w*sw]`` with ``strides = (sb, sc, sh, sw)``; ``codes``: the
    values are codes (float or integer) with table index ``(value + x_off) mod 256``, else
    uint8 table indices (``x_off`` 0); ``a64``: offsets need 64 bits."""

    t: torch.Tensor
    strides: tuple[int, int, int, int]
    x_off: int
    a64: bool
    codes: bool = True


def _needs64(t: torch.Tensor) -> bool:
    extent = 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()) if n > 0)
    return extent >= (1 << 31)


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
    kernels().nhwc_index_kernel[(triton_cdiv(total, BLOCK),)](x, out, total, C, H, W, float(a_off),
                                                            BLOCK=BLOCK)
    return out


def activation_operand(qa: torch.Tensor, a_off: int, index_pass: bool = False) -> ActOperand:
    """The float codes (B, C, H, W) read directly (any strides; no pass), or, ``index_pass``,
    their uint8 NHWC indices from :func:`activation_index` (one extra launch)."""
    if index_pass:
        idx = activation_index(qa, a_off)
        sb, sh, sw, sc = idx.stride()
        return ActOperand(idx, (sb, sc, sh, sw), 0, _needs64(idx), codes=False)
    x = qa if qa.dtype == torch.float32 else qa.float()
    return ActOperand(x, tuple(x.stride()), int(a_off), _needs64(x))


def gemm_operand(a_idx: torch.Tensor) -> ActOperand:
    """(M, G, K) table indices (any integer dtype) as the activations of a 1x1 conv with
    B = M, C = G*K, H = W = 1 (read in place when the reshape is a view)."""
    M, G, K = a_idx.shape
    a2 = a_idx.reshape(M, G * K)
    return ActOperand(a2, (a2.stride(0), a2.stride(1), 0, 0), 0, _needs64(a2))


def weight_index(qw: torch.Tensor, groups: int, w_off: int) -> torch.Tensor:
    """int64 (G, K, Ng) weight table indices, taps ordered (ky, kx, c)."""
    OC, Cg, kh, kw = qw.shape
    G = groups
    w = qw.reshape(G, OC // G, Cg, kh, kw).permute(0, 3, 4, 2, 1).reshape(G, kh * kw * Cg, OC // G)
    return (w + w_off).round().to(torch.int64)


def gemm_weights_as_conv(w_idx: torch.Tensor) -> torch.Tensor:
    """(G, K, N) weight indices -> float 'codes' (G*N, K, 1, 1) for the conv path (offset 0)."""
    G, K, N = w_idx.shape
    return w_idx.permute(0, 2, 1).reshape(G * N, K, 1, 1).float().contiguous()


# --------------------------------------------------------------------------------------------
# per-call epilogue operands

@dataclass(slots=True)
class ColumnArgs:
    """Per-call operands of the kernels' epilogue (never cached): n_a as a one-element int64
    tensor, n_w and s_w as float32 vectors read with a stride (0: one value for every
    column), s_a (float32, one element) and bias (float32); dummies where absent."""

    na: torch.Tensor
    nw: torch.Tensor
    nw_st: int
    sa: torch.Tensor
    sw: torch.Tensor
    sw_st: int
    bias: torch.Tensor
    dequant: bool
    has_bias: bool

    def cols(self, n0: int, n1: int) -> "ColumnArgs":
        """The operands of output channels n0:n1."""
        return replace(self, nw=self.nw[n0:n1] if self.nw_st else self.nw,
                       sw=self.sw[n0:n1] if self.sw_st else self.sw,
                       bias=self.bias[n0:n1] if self.has_bias else self.bias)

    def scale(self, OC: int) -> torch.Tensor:
        """float64 (OC,) float64(s_a) * float64(s_w) (the unfused dequantisation)."""
        sw = self.sw if self.sw_st else self.sw[:1].expand(OC)
        return self.sa.double() * sw.double()


def _on(t: torch.Tensor, device) -> torch.Tensor:
    return t if t.device == device else t.to(device)


def _column_vector(t: torch.Tensor, device) -> tuple[torch.Tensor, int]:
    """(float32 vector view, element stride) of a per-column operand; stride 0 for one value
    (or an expanded view), so nothing is copied."""
    t = _on(t.reshape(-1), device)
    if t.dtype != torch.float32:
        t = t.float()
    return t, (0 if t.numel() == 1 else t.stride(0))


def column_args(n_a, n_w: torch.Tensor | None, OC: int, device, s_a=None, s_w=None,
                bias=None) -> ColumnArgs:
    """The epilogue operands of one call (views and cached constants; no host sync)."""
    f32 = _dummy(device, torch.float32)
    na = _na_tensor(n_a, device)
    nw, nw_st = (f32, 0) if n_w is None else _column_vector(n_w, device)
    if s_a is None:
        sa, sw, sw_st = f32, f32, 0
    else:
        if not isinstance(s_a, torch.Tensor):
            s_a = torch.tensor(float(s_a))
        sa = _on(s_a.reshape(1), device)
        sa = sa if sa.dtype == torch.float32 else sa.float()
        sw, sw_st = _column_vector(s_w if isinstance(s_w, torch.Tensor)
                                   else torch.tensor(float(s_w)), device)
    if bias is not None:
        bias = _on(bias, device)
        bias = bias if bias.dtype == torch.float32 and bias.is_contiguous() else \
            bias.float().contiguous()
    return ColumnArgs(na, nw, nw_st, sa, sw, sw_st, f32 if bias is None else bias,
                      s_a is not None, bias is not None)


def _out_layout(s: ConvShape, gemm: bool):
    """(shape, strides b/n/l) of the output: NCHW for convs, (M, G, N) for GEMMs."""
    if gemm:
        return (s.B, s.G, s.Ng), (s.OC, 1, 0)
    return (s.B, s.OC, s.OH, s.OW), (s.OC * s.L, s.L, 1)


def _alloc_out(s: ConvShape, gemm: bool, dequant: bool, device):
    shape, strides = _out_layout(s, gemm)
    dtype = torch.float32 if dequant else torch.int64
    return torch.empty(shape, dtype=dtype, device=device), strides


# --------------------------------------------------------------------------------------------
# weight-side operands and their cache

@dataclass(slots=True)
class PreparedWeights:
    """Everything a forward kernel needs from the weights: ``tab`` (per-tap table, uint8
    weight indices or int8 maps V_t(W)), ``colw`` = cconst + sum_k beta(w) and ``wsum`` =
    sum_k w per padded column (int64 (G*NP,)), NP the padded columns per group."""

    tab: torch.Tensor
    colw: torch.Tensor
    wsum: torch.Tensor
    NP: int

    @property
    def nbytes(self) -> int:
        return self.tab.numel() * self.tab.element_size() + 2 * self.colw.numel() * 8


class _Entry:
    __slots__ = ("ref", "version", "ptr", "deps", "value", "nbytes", "finalizer")

    def __init__(self, ref, version, ptr, deps):
        self.ref, self.version, self.ptr, self.deps = ref, version, ptr, deps
        self.value, self.nbytes, self.finalizer = None, 0, None


def _drop_dead(cache_ref, key) -> None:
    cache = cache_ref()
    if cache is not None:
        e = cache._entries.get(key)
        if e is not None and e.ref() is None:
            cache._remove(key)


class WeightCache:
    """Weight-side operands of the weight tensors a backend has seen (one per instance).

    ``get(wt, sig, deps, build)`` returns ``build()``'s :class:`PreparedWeights` for the weight
    tensor ``wt``, reusing an earlier result when ``wt`` is the same tensor object, with the
    same ``_version`` and data pointer, and ``sig`` (hashable: kernel kind, shape, offsets)
    and ``deps`` (objects compared by identity: the LUT's int16 copy, the device
    factorisation) are equal. A result is stored the second time the same unchanged tensor is
    seen, so tensors used once (training) cost only a small marker; tensors that require grad
    or have no version counter (inference tensors) are never cached, nor are results built
    during CUDA graph capture. Stored bytes are bounded by ``max_bytes`` (default
    :data:`WEIGHT_CACHE_MAX`; results above :data:`WEIGHT_CACHE_ENTRY_MAX` are not stored, and
    a full cache stores nothing new rather than evicting live entries: inference runs the
    layers in a cycle, where LRU eviction would never hit). An entry is dropped when its
    tensor is freed (``weakref.finalize``) or seen modified.
    """

    MAX_ENTRIES = 4096

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes
        self._entries: dict = {}
        self.bytes = 0
        self.hits = self.misses = self.stores = 0

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if e.value is not None)

    def clear(self) -> None:
        for key in list(self._entries):
            self._remove(key)

    def _remove(self, key) -> None:
        e = self._entries.pop(key, None)
        if e is not None:
            if e.value is not None:
                cache_freed()
            self.bytes -= e.nbytes
            if e.finalizer is not None:
                e.finalizer.detach()

    @staticmethod
    def cacheable(wt) -> bool:
        return (WEIGHT_CACHE and isinstance(wt, torch.Tensor) and not wt.requires_grad
                and not wt.is_inference())

    def get(self, wt: torch.Tensor, sig: tuple, deps: tuple, build):
        if not self.cacheable(wt):
            self.misses += 1
            return build()
        key = (id(wt), sig)
        e = self._entries.get(key)
        version, ptr = wt._version, wt.data_ptr()
        same = (e is not None and e.ref() is wt and e.version == version and e.ptr == ptr
                and len(e.deps) == len(deps) and all(a is b for a, b in zip(e.deps, deps)))
        if same and e.value is not None:
            self.hits += 1
            return e.value
        self.misses += 1
        value = build()
        if same:
            self._store(key, e, wt, value)
        else:
            if e is not None:
                self._remove(key)
            if len(self._entries) >= self.MAX_ENTRIES:
                self._prune()
            self._entries[key] = _Entry(weakref.ref(wt), version, ptr, deps)
        return value

    def _store(self, key, e: _Entry, wt: torch.Tensor, value: PreparedWeights) -> None:
        limit = WEIGHT_CACHE_MAX if self.max_bytes is None else self.max_bytes
        nbytes = value.nbytes
        if nbytes > WEIGHT_CACHE_ENTRY_MAX or self.bytes + nbytes > limit:
            return
        if wt.is_cuda and torch.cuda.is_current_stream_capturing():
            return      # built inside a graph capture: the tables exist only after replay
        e.value, e.nbytes = value, nbytes
        e.finalizer = weakref.finalize(wt, _drop_dead, weakref.ref(self), key)
        e.finalizer.atexit = False
        self.bytes += nbytes
        self.stores += 1

    def _prune(self) -> None:
        """Drop dead and value-less entries (oldest first) until there is room."""
        for key in [k for k, e in self._entries.items() if e.ref() is None]:
            self._remove(key)
        for key in [k for k, e in self._entries.items() if e.value is None]:
            if len(self._entries) < self.MAX_ENTRIES // 2:
                break
            self._remove(key)
        while len(self._entries) >= self.MAX_ENTRIES:
            self._remove(next(iter(self._entries)))


def _weights_fn(weights):
    """A zero-argument callable giving the float32 contiguous weight codes (built only on a
    cache miss)."""
    if callable(weights):
        return weights
    return lambda: weights.float().contiguous()


def _prepared(cache: WeightCache | None, wkey, sig, deps, build) -> PreparedWeights:
    if cache is None or wkey is None:
        return build()
    return cache.get(wkey, sig, deps, build)


# --------------------------------------------------------------------------------------------
# LUT kernels

def lut_table16(table: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The LUT as int16 (table - mid) and mid (every <=8x8-bit LUT spans at most 2^16 values).
    The table's range is read back once per LUT tensor (``torch_backend.table_range``)."""
    t = table.to(torch.int32)
    tmin, tmax = table_range(table)
    if tmax - tmin > 65535:
        raise ValueError("LUT values span more than 16 bits")
    mid = tmin + 32768
    return (t - mid).to(torch.int16).contiguous(), mid


_LUT16_CACHE: dict = {}


def cached_lut16(table: torch.Tensor) -> tuple[torch.Tensor, int]:
    """lut_table16 of a LUT tensor, cached by identity (layers keep their LUT buffers)."""
    return memo_per_tensors(_LUT16_CACHE, (table,), (table.shape, table.device),
                            lambda: lut_table16(table), 64, on_clear=cache_freed)


_LUT16T_CACHE: dict = {}


def transposed_lut16(lut16: torch.Tensor) -> torch.Tensor:
    """The int16 LUT transposed, (CW, R) contiguous (the per-tap table builder reads one
    weight value's column as contiguous bytes); cached per int16 LUT tensor."""
    return memo_per_tensors(_LUT16T_CACHE, (lut16,), (), lambda: lut16.t().contiguous(), 64,
                            on_clear=cache_freed)


# --------------------------------------------------------------------------------------------
# error-aware gradient tables as int16 numerators

@dataclass(frozen=True)
class GradFractions:
    """A LUT's gradient tables as ``num_a / den_a[:, None]`` and ``num_w / den_w[None, :]``:
    int16 numerators (differences of two LUT entries, see :func:`axcnn.lut.gradient_fractions`)
    and float32 window widths, on the LUT's device. The kernels gather the numerators (half
    the bytes of float32) and divide once per sum."""

    num_a: torch.Tensor
    den_a: torch.Tensor
    num_w: torch.Tensor
    den_w: torch.Tensor


_FRACTIONS: dict = {}


def grad_fractions(lut) -> GradFractions | None:
    """The int16 fraction form of ``lut.grad_a`` / ``lut.grad_w`` (a ``LUTTensors``), or None
    when a numerator does not fit int16 or the fractions do not reproduce the float tables
    exactly (tables not made from ``lut.window``). Checked once per table tensor (one read
    back, cached by identity and version like ``table_range``)."""
    ga, gw, table = lut.grad_a, lut.grad_w, lut.table

    def compute():
        from ..lut import gradient_fractions

        num_a, den_a, num_w, den_w = (
            torch.from_numpy(v).to(table.device)
            for v in gradient_fractions(table.detach().cpu().numpy(), lut.window))
        fits = (max(int(num_a.abs().max()), int(num_w.abs().max())) <= 32767
                and torch.equal((num_a / den_a.double()[:, None]).float(), ga)
                and torch.equal((num_w / den_w.double()[None, :]).float(), gw))
        return (GradFractions(num_a.to(torch.int16), den_a.float(), num_w.to(torch.int16),
                              den_w.float()) if fits else None)

    return memo_per_tensors(_FRACTIONS, (ga, gw, table), (lut.window,), compute, 64,
                            on_clear=cache_freed)


def lut_mode(s: ConvShape, R: int) -> str:
    if FORCE_MODE is not None:
        return FORCE_MODE
    NP = padded_n(s.Ng)
    if s.M < 32:
        return "direct"
    if s.G * s.K * R * NP * 2 <= TAP_TABLE_MAX or s.G == 1:
        return "tap"
    return "direct"


def prepare_lut_weights(qw: torch.Tensor, lut16: torch.Tensor, mid: int, s: ConvShape,
                        w_off: int, mode: str, NP: int | None = None) -> PreparedWeights:
    """One launch of ``prep_lut_kernel``: the per-tap table (G, K, R, NP) int16 ("tap") or the
    uint8 weight indices (G, K, NP) ("direct"), and colw = K*mid, wsum = sum_k w per column."""
    dev = qw.device
    G, K, Ng = s.G, s.K, s.Ng
    NP = padded_n(Ng) if NP is None else NP
    R = lut16.shape[0]
    direct = mode == "direct"
    RB, CBN = 64, 32
    cols = torch.empty((2, G * NP), dtype=torch.int64, device=dev)
    n_col = triton_cdiv(NP, CBN)
    if direct:
        tab = torch.empty((G, K, NP), dtype=torch.uint8, device=dev)
        n_rb, n_tab = 1, K
    else:
        tab = torch.empty((G, K, R, NP), dtype=torch.int16, device=dev)
        n_rb = triton_cdiv(R, RB)
        n_tab = K * n_rb
    if G:
        lut_t = _dummy(dev, torch.int16) if direct else transposed_lut16(lut16)
        kernels().prep_lut_kernel[(n_col + n_tab, G)](
            qw, lut_t, tab, cols[0], cols[1], K, Ng, NP, R, s.Cg, s.kh * s.kw, w_off,
            K * mid, n_col, n_rb, BN=max(16, min(NP, 64)), RB=RB, CBN=CBN, BK=128,
            DIRECT=direct, num_warps=4)
    return PreparedWeights(tab, cols[0], cols[1], NP)


def run_lut_conv(act: ActOperand, weights, lut16: torch.Tensor, mid: int, s: ConvShape,
                 cargs: ColumnArgs, a_off: int, w_off: int, *, gemm: bool = False,
                 mode: str | None = None, cache: WeightCache | None = None, wkey=None):
    """LUT conv/GEMM through the per-tap or direct kernel; int64 or fused float32 output.

    ``weights``: the float weight codes (OC, Cg, kh, kw) or a callable giving them (only
    called when the weight side is built); ``cache``/``wkey``: the weight cache and the tensor
    that identifies the weights in it. Per-tap tables over TAP_TABLE_MAX are built and used
    in chunks of output channels (groups == 1; never cached)."""
    dev = act.t.device
    R, CW = lut16.shape
    mode = mode or lut_mode(s, R)
    out, strides = _alloc_out(s, gemm, cargs.dequant, dev)
    if out.numel() == 0:
        return out
    wfn = _weights_fn(weights)
    per_col = s.K * R * 2
    if mode == "tap" and s.G == 1 and s.OC > 16 and padded_n(s.OC) * per_col > TAP_TABLE_MAX:
        step = max(16, (TAP_TABLE_MAX // per_col) // 64 * 64)
        qw = wfn()
        for n0 in range(0, s.OC, step):
            n1 = min(s.OC, n0 + step)
            sub = ConvShape(s.B, s.C, s.H, s.W, n1 - n0, 1, s.kh, s.kw, s.OH, s.OW, s.stride,
                            s.padding, s.dilation)
            view = out[:, :, n0:n1] if gemm else out[:, n0:n1]
            prep = prepare_lut_weights(qw[n0:n1], lut16, mid, sub, w_off, mode)
            _launch_lut(act, prep, lut16, sub, cargs.cols(n0, n1), a_off, view, strides, mode)
        return out
    sig = ("lut", mode, s.G, s.K, s.Ng, R, CW, w_off)
    prep = _prepared(cache, wkey, sig, (lut16,),
                     lambda: prepare_lut_weights(wfn(), lut16, mid, s, w_off, mode))
    _launch_lut(act, prep, lut16, s, cargs, a_off, out, strides, mode)
    return out


@functools.lru_cache(maxsize=1024)
def _lut_plan(M: int, NP: int, G: int, K: int, direct: bool, BMc, BNc):
    """(BM, BN, grid, ACC64) of the LUT kernel for one shape and configuration: 64 rows by
    up to 64 columns unless configured (an H100 sweep over the ResNet-20 shapes: 64 rows beat
    128 on the 16- and 32-column layers by 12-36 %, and 16 rows on the 64-column ones by
    14-27 %)."""
    BN = BNc or min(NP, 64)
    BM = BMc or 64
    return BM, BN, (triton_cdiv(M, BM), NP // BN, G), K * 32768 >= (1 << 31)


def _launch_lut(act: ActOperand, prep: PreparedWeights, lut16, s: ConvShape, cargs: ColumnArgs,
                a_off: int, out, strides, mode: str) -> None:
    dev = act.t.device
    R, CW = lut16.shape
    direct = mode == "direct"
    cfg = CONFIG["direct" if direct else "lut"]
    BM, BN, grid, acc64 = _lut_plan(s.M, prep.NP, s.G, s.K, direct, cfg["BM"], cfg["BN"])
    koff, kdy, kdx = geometry_tables(s, dev, act.strides[1:])
    sb, sn, sl = strides
    kernels().lut_kernel[grid](
        act.t, lut16 if direct else prep.tab, prep.tab if direct else _dummy(dev, torch.uint8),
        koff, kdy, kdx, prep.colw, prep.wsum, cargs.na, cargs.nw, cargs.sa, cargs.sw,
        cargs.bias, out,
        s.M, s.K, s.Ng, prep.NP, R, CW, s.H, s.W, s.Cg, s.OH, s.OW, s.stride[0], s.stride[1],
        s.padding[0], s.padding[1], *act.strides, act.x_off, a_off, cargs.nw_st, cargs.sw_st,
        sb, sn, sl,
        BM=BM, BN=BN, DIRECT=direct, DEQUANT=cargs.dequant, HAS_BIAS=cargs.has_bias,
        ACC64=acc64, A64=act.a64, CODES=act.codes, UNROLL=cfg["unroll"],
        num_warps=cfg["num_warps"])


def run_dw_conv(act: ActOperand, weights, table16: torch.Tensor, mid: int, s: ConvShape,
                cargs: ColumnArgs, a_off: int, w_off: int, *, cache: WeightCache | None = None,
                wkey=None):
    """Grouped conv with one input channel per group (depthwise, channel multipliers)."""
    dev = act.t.device
    OC, K = s.OC, s.K
    R, CW = table16.shape
    out, (sb, sn, sl) = _alloc_out(s, False, cargs.dequant, dev)
    if out.numel() == 0:
        return out
    wfn = _weights_fn(weights)
    # weight side: OC 'groups' of one column, uint8 indices (OC, K)
    prep = _prepared(cache, wkey, ("dw", OC, K, CW, w_off), (table16,),
                     lambda: prepare_lut_weights(wfn(), table16, mid, _dw_shape(s), w_off,
                                                 "direct", NP=1))
    koff, kdy, kdx = geometry_tables(s, dev, act.strides[1:])
    cfg = CONFIG["dw"]
    BM, BO = cfg["BM"], cfg["BO"]
    grid = (triton_cdiv(s.M, BM), triton_cdiv(OC, BO))
    kernels().dw_kernel[grid](
        act.t, table16, prep.tab, koff, kdy, kdx, prep.colw, prep.wsum, cargs.na, cargs.nw,
        cargs.sa, cargs.sw, cargs.bias, out,
        s.M, K, OC, s.Ng, CW, s.H, s.W, s.OH, s.OW, s.stride[0], s.stride[1],
        s.padding[0], s.padding[1], *act.strides, act.x_off, a_off, cargs.nw_st, cargs.sw_st,
        sb, sn, sl,
        BM=BM, BO=BO, DEQUANT=cargs.dequant, HAS_BIAS=cargs.has_bias, A64=act.a64,
        CODES=act.codes, UNROLL=cfg["unroll"], num_warps=cfg["num_warps"])
    return out


# --------------------------------------------------------------------------------------------
# tensor-core kernel for factorised products (shared with the decomposed backend)

@dataclass
class DeviceFactorisation:
    """A Factorisation's tables on one device, terms grouped in scale classes."""

    U: torch.Tensor        # int8 (T, R)
    Vtab: torch.Tensor     # int8 (T, CW)
    alpha: torch.Tensor    # (R,): int32 while |alpha| < 2^23 (half the bytes to gather), else int64
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
                                < (1 << 23) else torch.int64).to(device),
                   torch.tensor(f.beta, dtype=torch.int64).to(device), classes,
                   bool(np.any(f.alpha)), bound)


def prepare_tc_weights(qw: torch.Tensor, df: DeviceFactorisation, s: ConvShape, NP: int,
                       KP: int, w_off: int, packed: bool, RT: int) -> PreparedWeights:
    """One launch of ``prep_tc_kernel``: V[t, g, n, r] = Vtab_t[w] (int8 (T, G, NP, KP), K
    contiguous) in the K-tile row order of ``tc_kernel`` (``packed``: flattened taps; else RT
    rows per tap), zero where a row or column has no weight; colw = sum_k beta(w) and wsum =
    sum_k w per column (the launch's programs add their rows' shares to zeroed sums)."""
    dev = qw.device
    G = s.G
    T = df.U.shape[0]
    V = (torch.empty if T else torch.zeros)((max(T, 1), G, NP, KP), dtype=torch.int8, device=dev)
    cols = torch.zeros((2, G * NP), dtype=torch.int64, device=dev)
    if G and KP:
        RB, BN = tc_prep_blocks(KP, NP, G, 2 * sm_count(dev))
        kernels().prep_tc_kernel[(KP // RB, NP // BN, G)](
            qw, df.Vtab if T else _dummy(dev, torch.int8), df.beta, V, cols[0], cols[1],
            s.K, KP, s.Ng, NP, df.Vtab.shape[1], s.Cg, s.kh * s.kw, w_off, G * KP * NP, RT,
            T=T, BN=BN, RB=RB, PACKED=packed, num_warps=4)
    return PreparedWeights(V, cols[0], cols[1], NP)


def tc_prep_blocks(KP: int, NP: int, G: int, min_ctas: int) -> tuple[int, int]:
    """(RB, BN) of ``prep_tc_kernel``: 32 rows (KP is a multiple of the K tile, >= 32) by up
    to 64 columns, both made smaller (down to 16) while the grid has fewer than ``min_ctas``
    programs (a small layer's weights are otherwise built by a few SMs, e.g. 18 programs for
    ResNet's 64-64@8)."""
    RB, BN = 32, min(NP, 64)
    while (KP // RB) * (NP // BN) * G < min_ctas and (BN > 16 or RB > 16):
        if BN > 16:
            BN //= 2
        else:
            RB //= 2
    return RB, BN


@functools.lru_cache(maxsize=1024)
def _tc_plan(Ng: int, n_kt: int, BMc, BNc, BK: int):
    """(NP, BN, BM, KP) of the tensor-core kernel for one shape and configuration (BM
    default 64; KP: the rows of V, n_kt K tiles of BK)."""
    NP = padded_n(Ng, 128 if Ng > 64 else 64)
    BN = BNc or (NP if NP <= 128 else (128 if NP % 128 == 0 else 64))
    return NP, BN, BMc or 64, n_kt * BK


_DEVICE_PROPS: dict = {}


def _device_property(device: torch.device, name: str, off_cuda: int, read) -> int:
    """A fixed property of a CUDA device (``read(index)``), read once per device; ``off_cuda``
    elsewhere (only the interpreter runs there)."""
    if device.type != "cuda":
        return off_cuda
    key = (name, device.index if device.index is not None else torch.cuda.current_device())
    if key not in _DEVICE_PROPS:
        _DEVICE_PROPS[key] = int(read(key[1]))
    return _DEVICE_PROPS[key]


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (132 on an H100 SXM; 1 off CUDA)."""
    return _device_property(device, "sms", 1,
                            lambda i: torch.cuda.get_device_properties(i).multi_processor_count)


def shared_memory(device: torch.device) -> int:
    """Bytes of shared memory one Triton program may use (227 KiB on an H100; that figure off
    CUDA, where only the interpreter runs)."""
    def read(i):
        from triton.runtime import driver
        return driver.active.utils.get_device_properties(i)["max_shared_mem"]
    return _device_property(device, "smem", 232448, read)


def tc_term_bytes(BM: int, BN: int, BK: int) -> int:
    """Shared memory of one GEMM term per pipeline stage of the tensor-core kernel (its A and
    V tiles, both int8 and K-major)."""
    return (BM + BN) * BK


def tc_launches(classes: list[tuple[int, int]], tmax: int) -> list[list[tuple[int, int]]]:
    """The scale classes (count, scale) split into launches of at most four classes and
    ``tmax`` terms (a class may be split: the launches' int64 results are summed)."""
    launches: list[list[tuple[int, int]]] = []
    cur: list[tuple[int, int]] = []
    n = 0
    for count, scale in classes:
        while count:
            if len(cur) == 4 or n == tmax:
                launches.append(cur)
                cur, n = [], 0
            take = min(count, tmax - n)
            cur.append((take, scale))
            n += take
            count -= take
    if cur or not launches:
        launches.append(cur)
    return launches


#: shared memory kept free of pipeline buffers (the kernel's other scratch)
TC_SMEM_RESERVE = 8192


def tc_max_terms(term_bytes: int, smem: int) -> int:
    """Terms one tensor-core launch may hold: as many as one pipeline stage fits."""
    return max(1, (smem - TC_SMEM_RESERVE) // term_bytes)


def tc_stages(n_terms: int, term_bytes: int, smem: int, stages: int) -> int:
    """Pipeline stages of one tensor-core launch: the configured number, fewer when the
    (stages - 1) buffered K tiles of all its terms would not fit the shared memory."""
    per = max(n_terms, 1) * term_bytes
    return max(1, min(stages, 1 + (smem - TC_SMEM_RESERVE) // per))


#: launches whose first guess did not fit the shared memory (Triton's OutOfResources): the
#: pipeline stages that did, per launch signature, and the terms per launch, per tile shape
_TC_STAGES: dict = {}
_TC_TMAX: dict = {}


def _out_of_resources():
    from triton.runtime.errors import OutOfResources
    return OutOfResources


def tc_splits(ctas: int, n_kt: int, sms: int) -> int:
    """K splits of the tensor-core kernel: grids that do not fill one wave (fewer CTAs than
    SMs) get split along K (at least 4 K tiles per split) until they fill the card twice.
    (H100: splitting a 256-CTA grid in two halved the speed of ResNet's 64-64@8 layer.)"""
    if ctas <= 0 or ctas >= sms or n_kt < 8:
        return 1
    return max(1, min(n_kt // 4, triton_cdiv(2 * sms, ctas)))


def tc_block_k(Cg: int, BK: int) -> int:
    """K tile of the tensor-core kernel for Cg channels per tap: the configured BK, or the
    smallest power of two >= Cg (at least 32, the int8 dot minimum) when a tap has fewer."""
    return BK if Cg >= BK else max(32, 1 << max(0, Cg - 1).bit_length())


def tc_tiles(s: ConvShape, cfg: dict | None = None) -> tuple[bool, int, int, int]:
    """(packed, BK, n_c, n_kt) of the tensor-core kernel for a shape: K tiles over the
    flattened taps (``packed``, taps narrower than ``cfg['packed_below']`` channels) or
    ``n_c`` channel runs of BK per tap; ``n_kt`` K tiles in all."""
    cfg = cfg or CONFIG["tc"]
    packed = s.Cg < cfg["packed_below"]
    BK = 32 if packed else tc_block_k(s.Cg, cfg["BK"])
    n_c = triton_cdiv(s.Cg, BK)
    return packed, BK, n_c, (triton_cdiv(s.K, BK) if packed else s.kh * s.kw * n_c)


@dataclass
class TCMaps:
    """Activation side of one tensor-core call (:func:`tc_activation_maps`)."""

    maps: torch.Tensor     # int8 (T, map_st): U_t of the zero-padded NHWC input, plane by plane
    rs: torch.Tensor       # int32 (B*HP*WP*G,): sum over a pixel's group channels of v - a_off
    ral: torch.Tensor      # int64 (same): sum of alpha(v) (a dummy without a row function)
    HP: int
    WP: int


def tc_map_blocks(pixels: int, Cg: int, sms: int) -> tuple[int, int, bool]:
    """(BP, BC, channel tiles) of ``tc_map_kernel`` for ``pixels`` padded pixels (times
    groups) of ``Cg`` channels: tiles of 2048 elements, 32 channels by 64 pixels (narrower
    layers: all their channels, more pixels), or 64 by 32 where that leaves fewer than two
    programs per SM (e.g. VGG's 512-channel 2x2 layer: 16 us instead of 27 on an H200);
    (channels, pixels) tiles from CONFIG["tc"]["map_ch_tiles"] channels up."""
    BC = min(32, max(2, 1 << max(0, Cg - 1).bit_length()))
    if Cg > 32 and triton_cdiv(pixels, 2048 // BC) < 2 * sms:
        BC = 64
    return 2048 // BC, BC, Cg >= CONFIG["tc"]["map_ch_tiles"]


def tc_activation_maps(act: ActOperand, df: DeviceFactorisation, s: ConvShape, na: torch.Tensor,
                       a_off: int, slack: int) -> TCMaps:
    """One launch of ``tc_map_kernel`` over the input padded by the convolution's padding
    (the border holds the padding index a_off - n_a). Each map plane has ``slack`` bytes
    after its last pixel: K tiles wider than a tap's channels read past it (times zero)."""
    dev = act.t.device
    T = df.U.shape[0]
    HP, WP = s.H + 2 * s.padding[0], s.W + 2 * s.padding[1]
    npix = s.B * HP * WP
    map_st = npix * s.C + slack
    maps = torch.empty((max(T, 1), map_st), dtype=torch.int8, device=dev)
    rs = torch.empty(npix * s.G, dtype=torch.int32, device=dev)
    ral = (torch.empty(npix * s.G, dtype=torch.int64, device=dev) if df.has_alpha
           else _dummy(dev))
    if npix and s.G:
        BP, BC, ch_tiles = tc_map_blocks(npix * s.G, s.Cg, sm_count(dev))
        kernels().tc_map_kernel[(triton_cdiv(npix, BP), s.G)](
            act.t, df.U if T else _dummy(dev, torch.int8), df.alpha, na, maps, rs, ral, npix,
            s.C, s.Cg, s.G, s.H, s.W, HP, WP, s.padding[0], s.padding[1], *act.strides,
            act.x_off, a_off, df.U.shape[1], map_st, T=T, HAS_ALPHA=df.has_alpha,
            CODES=act.codes, CH_TILES=ch_tiles, BP=BP, BC=BC)
    return TCMaps(maps, rs, ral, HP, WP)


def run_tc_conv(act: ActOperand, weights, df: DeviceFactorisation, s: ConvShape,
                cargs: ColumnArgs, a_off: int, w_off: int, *, gemm: bool = False,
                cache: WeightCache | None = None, wkey=None):
    """sum_t s_t U_t(A) @ V_t(W) + alpha/beta + cross terms on int8 tensor cores.

    ``weights``/``cache``/``wkey`` as in :func:`run_lut_conv`. The activation maps are built
    once per call (:func:`tc_activation_maps`); factorisations with more than four scale
    classes, or more terms than the shared memory holds (:func:`tc_launches`), run several
    launches (column terms and alpha in the first), summed in int64 and dequantised unfused.
    A launch split along K (:func:`tc_splits`) writes int64 partials that one more kernel
    sums (and, for a single launch, dequantises: :func:`_split_sum`)."""
    k = kernels()
    dev = act.t.device
    G, K, Ng = s.G, s.K, s.Ng
    cfg = CONFIG["tc"]
    packed, BK, n_c, n_kt = tc_tiles(s, cfg)
    NP, BN, BM, KP = _tc_plan(Ng, n_kt, cfg["BM"], cfg["BN"], BK)
    wfn = _weights_fn(weights)
    prep = _prepared(cache, wkey, ("tc", G, K, Ng, NP, KP, BK, packed, w_off), (df,),
                     lambda: prepare_tc_weights(wfn(), df, s, NP, KP, w_off, packed, n_c * BK))
    V = prep.tab
    am = tc_activation_maps(act, df, s, cargs.na, a_off, BK)
    koff = (geometry_tables(s, dev, (1, am.WP * s.C, s.C), pad_to=BK)[0] if packed
            else _dummy(dev, torch.int32))
    a64 = am.maps.shape[1] >= (1 << 31)
    grid = [triton_cdiv(s.M, BM), NP // BN, G]
    S = tc_splits(grid[0] * grid[1] * G, n_kt, sm_count(dev)) if cfg["split"] else 1
    kt_per = triton_cdiv(n_kt, S)
    S = triton_cdiv(n_kt, kt_per)
    grid[2] = G * S
    wide = any(K * b >= (1 << 31) for b in df.bound)
    smem, tb = shared_memory(dev), tc_term_bytes(BM, BN, BK)
    tile_key = (BM, BN, BK, str(dev))
    tmax = min(tc_max_terms(tb, smem), _TC_TMAX.get(tile_key, 1 << 30))
    chunks = tc_launches(list(df.classes), tmax)
    fuse = cargs.dequant and len(chunks) == 1       # dequantised in a kernel epilogue
    out_final = None
    t0 = 0
    for ci, chunk in enumerate(chunks):
        first = ci == 0
        counts = [c for c, _ in chunk] + [0] * (4 - len(chunk))
        scales = [sc for _, sc in chunk] + [1] * (4 - len(chunk))
        n_terms = sum(counts)
        shape, (sb, sn, sl) = _out_layout(s, gemm)
        out = torch.empty((S, *shape) if S > 1 else shape,
                          dtype=torch.float32 if fuse and S == 1 else torch.int64, device=dev)
        if out.numel() == 0:
            return torch.empty(shape, dtype=torch.float32 if cargs.dequant else torch.int64,
                               device=dev)
        Vt = V[t0:t0 + max(n_terms, 1)]
        key = (tile_key, tuple(counts), packed, wide, fuse and S == 1, S > 1,
               df.has_alpha and first, first, cfg["num_stages"])
        stages = _TC_STAGES.get(key) or tc_stages(n_terms, tb, smem, cfg["num_stages"])
        launch = functools.partial(
            k.tc_kernel[tuple(grid)], am.maps[t0:t0 + max(n_terms, 1)], am.rs, am.ral, Vt,
            koff, prep.colw, prep.wsum, cargs.na, cargs.nw, cargs.sa, cargs.sw, cargs.bias, out,
            scales[0], scales[1], scales[2], scales[3],
            s.M, K, Ng, NP, KP, am.HP, am.WP, s.C, s.Cg, s.OH, s.OW, s.stride[0], s.stride[1],
            s.dilation[0], s.dilation[1], s.kw, s.kh * s.kw, n_kt, n_c, am.maps.shape[1],
            cargs.nw_st, cargs.sw_st, G * KP * NP, KP * NP, sb, sn, sl, kt_per,
            out[0].numel() if S > 1 else 0, G,
            T0=counts[0], T1=counts[1], T2=counts[2], T3=counts[3],
            HAS_ALPHA=df.has_alpha and first, COLS=first, BM=BM, BN=BN, BK=BK,
            DEQUANT=fuse and S == 1, HAS_BIAS=fuse and S == 1 and cargs.has_bias, WIDE=wide,
            A64=a64, SPLIT=S > 1, PACKED=packed, num_warps=cfg["num_warps"] if BN <= 64 else 8)
        while True:
            # the stage count is a guess from the tile sizes; a launch that does not fit
            # the shared memory is retried with fewer stages, then with fewer terms
            try:
                launch(num_stages=stages)
                break
            except _out_of_resources():
                if stages > 1:
                    stages -= 1
                elif n_terms > 1:
                    _TC_TMAX[tile_key] = max(1, n_terms // 2)
                    return run_tc_conv(act, weights, df, s, cargs, a_off, w_off, gemm=gemm,
                                       cache=cache, wkey=wkey)
                else:
                    raise
        _TC_STAGES[key] = stages
        if S > 1:
            out = _split_sum(out, s, gemm, cargs, fuse)
        out_final = out if out_final is None else out_final.add_(out)
        t0 += n_terms
    if cargs.dequant and not fuse:
        out_final = dequant_torch(out_final, cargs.scale(s.OC),
                                  cargs.bias if cargs.has_bias else None, gemm)
    return out_final


def _split_sum(parts: torch.Tensor, s: ConvShape, gemm: bool, cargs: ColumnArgs,
               dequant: bool) -> torch.Tensor:
    """One launch of ``tc_split_sum_kernel``: the S int64 partials of a split launch summed
    (int64) or summed and dequantised (``dequant``)."""
    shape, (_, sn, _) = _out_layout(s, gemm)
    out = torch.empty(shape, dtype=torch.float32 if dequant else torch.int64,
                      device=parts.device)
    BLOCK = 1024
    kernels().tc_split_sum_kernel[(triton_cdiv(out.numel(), BLOCK),)](
        parts, out, cargs.sa, cargs.sw, cargs.bias, out.numel(), parts.shape[0],
        parts[0].numel(), sn, s.OC, cargs.sw_st, BLOCK=BLOCK, DEQUANT=dequant,
        HAS_BIAS=dequant and cargs.has_bias, num_warps=4)
    return out


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
    if p.signed is not None:
        return bool(p.signed), bool(p.signed)
    mins = torch.stack([p.qa.min() if p.qa.numel() else p.qa.new_zeros(()),
                        p.qw.min() if p.qw.numel() else p.qw.new_zeros(())]).tolist()
    return mins[0] < 0, mins[1] < 0


# --------------------------------------------------------------------------------------------
# the backend

class TritonBackend(TorchBackend):
    kind = Backend.TRITON

    def supports(self, device: torch.device) -> str | None:
        return device_ok(torch.device(device))

    @functools.cached_property
    def weight_cache(self) -> WeightCache:
        """This instance's :class:`WeightCache` (created on first use)."""
        return WeightCache()

    # ---- forward ---------------------------------------------------------------------------
    def conv2d_acc(self, p: IntConvProblem) -> torch.Tensor:
        return self._forward(p, None, None, None)

    def conv2d_dequant(self, p: IntConvProblem, s_a: torch.Tensor, s_w: torch.Tensor,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
        """float32 output = float32(float64(acc) * s_a * s_w) (+ bias), fused in the epilogue."""
        return self._forward(p, s_a, s_w, bias)

    def _forward(self, p: IntConvProblem, s_a, s_w, bias):
        s = ConvShape.of(p)
        dev = p.qa.device
        if p.table is None:
            a_signed, w_signed = code_signedness(p)
            a_off, w_off = (128 if a_signed else 0), (128 if w_signed else 0)
        else:
            a_off, w_off = int(p.a_offset), int(p.w_offset)
        cargs = column_args(p.n_a, p.n_w, s.OC, dev, s_a, s_w, bias)
        cache = self.weight_cache
        if s.Cg == 1 and s.G > 1:
            if p.table is None:
                table16, mid = exact_table16(a_signed, w_signed, dev)
            else:
                table16, mid = cached_lut16(p.table)
            act = activation_operand(p.qa, a_off, CONFIG["dw"]["a_index"])
            return run_dw_conv(act, p.qw, table16, mid, s, cargs, a_off, w_off, cache=cache,
                               wkey=p.qw)
        if p.table is None:
            df = exact_device_factorisation(a_signed, w_signed, dev)
            act = activation_operand(p.qa, a_off, CONFIG["tc"]["a_index"])
            return run_tc_conv(act, p.qw, df, s, cargs, a_off, w_off, cache=cache, wkey=p.qw)
        lut16, mid = cached_lut16(p.table)
        act = activation_operand(p.qa, a_off, CONFIG["lut"]["a_index"])
        return run_lut_conv(act, p.qw, lut16, mid, s, cargs, a_off, w_off, cache=cache,
                            wkey=p.qw)

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
        cargs = column_args(0, None, G * N, a_idx.device)
        return run_lut_conv(gemm_operand(a_idx), lambda: gemm_weights_as_conv(w_idx), lut16, mid,
                            s, cargs, 0, 0, gemm=True, cache=self.weight_cache, wkey=w_idx)

    # ---- error-aware backward ---------------------------------------------------------------
    def error_aware_grads(self, p: IntConvProblem, grad_y, s_a, s_w, lut,
                          need_x: bool, need_w: bool):
        s = ConvShape.of(p)
        R = lut.grad_a.shape[0]
        NP = padded_n(s.Ng, 128)       # the kernels take all NP columns in one block
        frac = grad_fractions(lut)
        item = 2 if frac is not None else 4
        if NP > 128 or s.G * s.K * R * NP * item > GRAD_TABLE_MAX:
            return super().error_aware_grads(p, grad_y, s_a, s_w, lut, need_x, need_w)
        k = kernels()
        dev = p.qa.device
        G, K, Ng, M = s.G, s.K, s.Ng, s.M
        a_off, w_off = int(p.a_offset), int(p.w_offset)
        pad = (a_off - _na_tensor(p.n_a, dev)).to(torch.int32)   # index of real zero, on the device
        a_nhwc = activation_index(p.qa, a_off)
        w_idx = weight_index(p.qw, G, w_off)
        wpad = torch.zeros((G, K, NP), dtype=torch.int64, device=dev)
        wpad[:, :, :Ng] = w_idx
        wcols = wpad.reshape(-1)
        koff, kdy, kdx = geometry_tables(s, dev)
        gy = grad_y.permute(0, 2, 3, 1).reshape(M, G, Ng).float()
        geo = (s.H, s.W, s.C, s.Cg, s.OH, s.OW, s.stride[0], s.stride[1], s.padding[0],
               s.padding[1], pad)
        # per-tap tables, layout (R, G*K, NP): row (a, g, k) holds table[a, w[g, k, n]] over n;
        # int16 numerators (frac) or the float32 tables, divided by den once per sum
        if frac is not None:
            tab_a, den_a, tab_w, den_w = frac.num_a, frac.den_a, frac.num_w, frac.den_w
        else:
            tab_a, tab_w = lut.grad_a.float(), lut.grad_w.float()
            den_a = torch.ones(tab_a.shape[0], dtype=torch.float32, device=dev)
            den_w = torch.ones(tab_w.shape[1], dtype=torch.float32, device=dev)
        gx = gw = None
        if need_x:
            s_w_g = (s_w.reshape(G, Ng).float() if s_w.ndim else s_w.float().expand(G, Ng)).to(dev)
            gs = torch.zeros((M, G, NP), dtype=torch.float32, device=dev)
            gs[:, :, :Ng] = gy * s_w_g[None]
            nw = torch.zeros((G, NP), dtype=torch.float32, device=dev)
            nw[:, :Ng] = p.n_w.reshape(-1).to(dev).float().expand(G * Ng).reshape(G, Ng)
            ta = tab_a[:, wcols]
            gx = torch.empty((s.B, s.C, s.H, s.W), dtype=torch.float32, device=dev)
            npix = s.B * s.H * s.W
            cfg = CONFIG["ea_gx"]
            BC = min(cfg["BC"], 1 << max(0, s.Cg - 1).bit_length())
            BM = max(1, cfg["BM"] * 64 // NP * cfg["BC"] // BC)
            k.ea_gx_kernel[(triton_cdiv(npix, BM), triton_cdiv(s.Cg, BC), G)](
                a_nhwc, ta, den_a, gs, nw.reshape(-1), gx, npix, K, s.C, G, s.Cg, NP, s.H, s.W,
                s.OH, s.OW, s.stride[0], s.stride[1], s.padding[0], s.padding[1],
                s.dilation[0], s.dilation[1], KH=s.kh, KW=s.kw, BM=BM, BC=BC, BN=NP,
                num_warps=cfg["num_warps"])
            del ta
        if need_w:
            gyp = torch.zeros((M, G, NP), dtype=torch.float32, device=dev)
            gyp[:, :, :Ng] = gy
            tw = tab_w[:, wcols]
            cfg = CONFIG["ea_gw"]
            BKK = cfg["BKK"]
            BM = max(1, cfg["BM"] * 64 // NP)
            kblocks = triton_cdiv(K, BKK)
            S = max(1, min(triton_cdiv(cfg["programs"], kblocks * G), triton_cdiv(M, BM * 4)))
            m_per = triton_cdiv(triton_cdiv(M, S), BM) * BM
            S = triton_cdiv(M, m_per)
            part = torch.empty((S, G, K, NP), dtype=torch.float32, device=dev)
            k.ea_gw_kernel[(kblocks, S, G)](
                a_nhwc, tw, gyp, part, koff, kdy, kdx, M, K, G, NP, *geo, m_per,
                BM=BM, BN=NP, BKK=BKK, num_warps=cfg["num_warps"])
            del tw
            gwt = part.sum(dim=0)[:, :, :Ng] / den_w[w_idx]
            gwt += p.n_a * gy.sum(dim=0)[:, None, :]
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


register_backend(Backend.TRITON)(TritonBackend)
