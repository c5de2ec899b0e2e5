"""The ``torch`` backend: vectorised, chunked, exact; CPU and CUDA tensors.

LUT GEMM strategy. For fixed weights, row v of the per-tap table T_k[v, n] = LUT[v, w[k, n]]
is what activation code v contributes at tap k, so out[m, :] = sum_k T_k[a[m, k], :] is an
``embedding_bag`` (sum mode) over a (G*K*R, N) table: R*K*N table entries built once per call,
then M*K row additions. Sums run in float32, which is exact while every partial sum stays an
integer below 2^24: the table is shifted to be non-negative and, when K*max would exceed 2^24,
split into 8-bit digits that are summed separately and recombined in int64. For small M (fewer
rows than ``GATHER_ROWS_PER_LUT_ROW`` times the LUT rows) a direct chunked gather is cheaper
and is used instead.

Exact products use a float GEMM on zero-point-centred codes (float32 when K*max|a|*max|w| <
2^24 on the CPU, float64 otherwise and always on CUDA, where TF32 could round).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from .backends import Backend, register_backend
from .problem import IntConvProblem

EXACT_F32 = 1 << 24
#: elements per temporary chunk (bounds peak memory at a few hundred MB)
CHUNK_ELEMS = 1 << 25
#: below this many output rows per LUT row, gathering every product beats building the
#: (K*R, N) embedding table (measured crossover on a 2-core CPU: M between 2R and 8R)
GATHER_ROWS_PER_LUT_ROW = 4


def memo_per_tensors(cache: dict, tensors: tuple, extra: tuple, compute, limit: int,
                     on_clear=None):
    """``compute()``, remembered in ``cache`` per identity, storage and version of ``tensors``
    (plus ``extra``); weak references check that a hit is still the same tensors (a freed
    tensor's id can come back). Beyond ``limit`` entries the cache is emptied (then
    ``on_clear()``, e.g. when the values hold device tensors a CUDA graph may read)."""
    key = tuple((id(t), t.data_ptr(), t._version) for t in tensors) + extra
    hit = cache.get(key)
    if hit is not None and all(r() is t for r, t in zip(hit[0], tensors)):
        return hit[1]
    value = compute()
    if len(cache) > limit:
        cache.clear()
        if on_clear is not None:
            on_clear()
    cache[key] = (tuple(weakref.ref(t) for t in tensors), value)
    return value


_RANGES: dict = {}


def table_range(table: torch.Tensor) -> tuple[int, int]:
    """(min, max) of a LUT tensor, read back once per tensor (cached by identity and version,
    so later calls on a GPU do not wait for it)."""
    return memo_per_tensors(
        _RANGES, (table,), (table.device,),
        lambda: (int(table.min()), int(table.max())) if table.numel() else (0, 0), 256)


#: fewest taps per float32 pass before _exact_passes splits the table into digits instead
MIN_CHUNK_TAPS = 32


def _exact_passes(tp: torch.Tensor, K: int, maxv: int) -> list[tuple[int, int, torch.Tensor, int]]:
    """float32 passes (k0, k1, table, multiplier) over a non-negative table with entries <= maxv
    whose sums over taps k0..k1 are exact: the whole table over chunks of K of at most
    (2^24 - 1) // maxv taps (each tap summed once), or, where chunks would be shorter than
    :data:`MIN_CHUNK_TAPS`, digit tables over all K taps (:func:`_digits`)."""
    if K * maxv < EXACT_F32:
        return [(0, K, tp.float(), 1)]
    per = (EXACT_F32 - 1) // max(maxv, 1)
    if per < MIN_CHUNK_TAPS:
        return [(0, K, d, mult) for d, mult in _digits(tp, K, maxv)]
    n = -(-K // per)
    step = -(-K // n)                     # balanced chunks
    table = tp.float()
    return [(k0, min(K, k0 + step), table, 1) for k0 in range(0, K, step)]


def _digits(tp: torch.Tensor, K: int, maxv: int) -> list[tuple[torch.Tensor, int]]:
    """Split a non-negative int64 table with entries <= maxv into float32 digit tables whose
    K-term sums are exact."""
    base_bits = max(1, (EXACT_F32 // max(K, 1)).bit_length() - 1)
    digits, shift = [], 0
    while (maxv >> shift) > 0:
        digits.append((((tp >> shift) & ((1 << base_bits) - 1)).float(), 1 << shift))
        shift += base_bits
    return digits


def lut_gemm(a_idx: torch.Tensor, w_idx: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """out[m, g, n] = sum_k table[a_idx[m, g, k], w_idx[g, k, n]] exactly (int64)."""
    M, G, K = a_idx.shape
    R = table.shape[0]
    if M < GATHER_ROWS_PER_LUT_ROW * R:
        return _gather_gemm(a_idx, w_idx, table)
    taps = torch.arange(G * K, device=a_idx.device).view(1, G, K) * R
    return _bag_gemm((a_idx + taps).reshape(M * G, K), w_idx, table, M)


def _gather_gemm(a_idx: torch.Tensor, w_idx: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Few rows: gather every product directly, in chunks."""
    M, G, K = a_idx.shape
    N = w_idx.shape[2]
    C = table.shape[1]
    flat = table.to(torch.int64).reshape(-1)
    out = torch.empty((M, G, N), dtype=torch.int64, device=a_idx.device)
    step = max(1, CHUNK_ELEMS // max(1, G * K * N))
    for m0 in range(0, M, step):
        idx = a_idx[m0:m0 + step, :, :, None] * C + w_idx[None]
        out[m0:m0 + step] = flat[idx].sum(dim=2)
    return out


def _bag_gemm(bag_in: torch.Tensor, w_idx: torch.Tensor, table: torch.Tensor, M: int) -> torch.Tensor:
    """``bag_in`` (M*G, K) holds (g*K + k)*R + a: one embedding_bag row per output row and group."""
    G, K, N = w_idx.shape
    R = table.shape[0]
    t = table.to(torch.int64)
    tmin, tmax = table_range(table)
    tp = t - tmin
    out = torch.empty((M, G, N), dtype=torch.int64, device=bag_in.device)
    if M == 0 or K == 0 or N == 0:
        return out.zero_()
    ncols = max(1, min(N, CHUNK_ELEMS // (G * K * R)))
    bags = {(0, K): bag_in}                 # the bag columns of each K chunk, cut once
    for n0 in range(0, N, ncols):
        tab = tp[:, w_idx[:, :, n0:n0 + ncols]].permute(1, 2, 0, 3).reshape(G * K * R, -1)
        acc = None
        for k0, k1, part_tab, mult in _exact_passes(tab, K, tmax - tmin):
            if (k0, k1) not in bags:
                bags[k0, k1] = bag_in[:, k0:k1].contiguous()
            part = F.embedding_bag(bags[k0, k1], part_tab, mode="sum").to(torch.int64)
            acc = part * mult if acc is None else acc.add_(part * mult)
        out[:, :, n0:n0 + ncols] = acc.view(M, G, -1)
    return out.add_(K * tmin)


def exact_gemm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact integer batched GEMM of integer-valued float tensors: (G, M, K) @ (G, K, N)."""
    K = a.shape[-1]
    dtype = torch.float64       # exact for |products| * K < 2^53; on the GPU never read back
    if a.device.type == "cpu":
        bound = K * float(a.abs().max() if a.numel() else 0) * float(w.abs().max() if w.numel() else 0)
        dtype = torch.float32 if bound < EXACT_F32 else torch.float64
    return torch.matmul(a.to(dtype), w.to(dtype)).round().to(torch.int64)


def unfold_codes(p: IntConvProblem) -> torch.Tensor:
    """Activation codes per output position and tap, (M=B*L, G, K); padding holds -n_a."""
    qw = p.qw
    kh, kw = qw.shape[2], qw.shape[3]
    g = p.geometry
    cols = F.unfold(p.qa + p.n_a, (kh, kw), dilation=g.dilation, padding=g.padding, stride=g.stride)
    cols = cols - p.n_a
    B, CK, L = cols.shape
    G = g.groups
    return cols.view(B, G, CK // G, L).permute(0, 3, 1, 2).reshape(B * L, G, CK // G)


def weight_codes(qw: torch.Tensor, groups: int) -> torch.Tensor:
    """Weight codes (OC, C/G, kh, kw) as (G, K, OC/G)."""
    return qw.reshape(groups, qw.shape[0] // groups, -1).permute(0, 2, 1)


def output_layout(acc: torch.Tensor, p: IntConvProblem) -> torch.Tensor:
    """(M, G, Ng) -> (B, OC, OH, OW)."""
    B, _, H, W = p.qa.shape
    kh, kw = p.qw.shape[2], p.qw.shape[3]
    oh, ow = p.geometry.output_hw(H, W, kh, kw)
    return acc.reshape(B, oh, ow, -1).permute(0, 3, 1, 2).contiguous()


class TorchBackend:
    kind = Backend.TORCH

    def supports(self, device: torch.device) -> str | None:
        return None

    def lut_gemm(self, a_idx, w_idx, table):
        return lut_gemm(a_idx, w_idx, table)

    def conv2d_acc(self, p: IntConvProblem) -> torch.Tensor:
        """Accumulators in the unfolded layout (B, G, K, L): no permuted copies of the patches.

        Exact products: one batched GEMM of the zero-point-centred weights with the centred
        patches (the padding of the centred input is exactly 0). LUT products: embedding-bag
        rows (b, l, g) over the per-tap tables, plus the exact cross terms.
        """
        B, _, H, W = p.qa.shape
        OC, _, kh, kw = p.qw.shape
        g = p.geometry
        G = g.groups
        oh, ow = g.output_hw(H, W, kh, kw)
        L = oh * ow
        cols = F.unfold(p.qa + p.n_a, (kh, kw), dilation=g.dilation, padding=g.padding,
                        stride=g.stride)                              # (B, G*K, L), centred codes
        K = cols.shape[1] // G
        Ng = OC // G
        cols = cols.view(B, G, K, L)
        n_w = p.n_w.to(cols.device).reshape(G, Ng)
        w = p.qw.reshape(G, Ng, K)                                    # weight codes
        if p.table is None:
            acc = exact_gemm((w + n_w[:, :, None])[None], cols)       # (B, G, Ng, L)
            return acc.view(B, OC, oh, ow)
        R = p.table.shape[0]
        w_idx = (w + p.w_offset).to(torch.int64).permute(0, 2, 1)     # (G, K, Ng)
        M = B * L
        shift = p.a_offset - p.n_a                                    # centred code -> index
        # exact zero-point cross terms: n_w * sum(a) + n_a * sum(w) + K * n_a * n_w
        n_a_i = (p.n_a.round().to(torch.int64) if isinstance(p.n_a, torch.Tensor)
                 else int(round(float(p.n_a))))                       # a device tensor: no sync
        n_w_i = n_w.round().to(torch.int64)                           # (G, Ng)
        sum_a = (cols.sum(dim=2) - K * p.n_a).round().to(torch.int64)  # (B, G, L), codes
        if M < GATHER_ROWS_PER_LUT_ROW * R:
            a_idx = (cols + shift).to(torch.int64).permute(0, 3, 1, 2).reshape(M, G, K)
            acc = _gather_gemm(a_idx, w_idx, p.table)                 # (M, G, Ng)
        else:
            # embedding-bag rows (b, l, g) of table rows (g*K + k)*R + index: offsets added in
            # place (cols is not read again), cast and permuted in one copy
            taps = torch.arange(G * K, device=cols.device, dtype=cols.dtype).view(1, G, K, 1) * R
            bag = torch.empty((B, L, G, K), dtype=torch.int32, device=cols.device)
            bag.copy_(cols.add_(taps + shift).permute(0, 3, 1, 2))
            acc = _bag_gemm(bag.view(M * G, K), w_idx, p.table, M)   # (M, G, Ng)
        acc = acc.view(B, L, G, Ng).permute(0, 2, 3, 1)
        sum_w = w.sum(dim=2).round().to(torch.int64)                  # (G, Ng)
        acc = acc + sum_a[:, :, None, :] * n_w_i[None, :, :, None]
        acc += (n_a_i * sum_w + K * n_a_i * n_w_i)[None, :, :, None]
        return acc.reshape(B, OC, oh, ow)

    def error_aware_grads(self, p: IntConvProblem, grad_y, s_a, s_w, lut,
                          need_x: bool, need_w: bool):
        """Gradients of the error-aware rule; see :func:`axcnn.ops.functional.approx_conv2d`."""
        grad_a, grad_w = lut.grad_a, lut.grad_w
        a = unfold_codes(p)
        w = weight_codes(p.qw, p.geometry.groups)
        M, G, K = a.shape
        Ng = w.shape[2]
        R = p.table.shape[0]
        a_idx = (a + p.a_offset).to(torch.int64)
        w_idx = (w + p.w_offset).to(torch.int64)
        gy = grad_y.permute(0, 2, 3, 1).reshape(M, G, Ng).float()        # (M, G, Ng)
        s_w_g = s_w.reshape(G, Ng).float() if s_w.ndim else s_w.float().expand(G, Ng)
        n_w = p.n_w.reshape(G, Ng).float()
        flat = a_idx + (torch.arange(G * K, device=a.device).view(1, G, K) * R)  # (M, G, K)
        gx = gw = None
        if need_x:
            gs = gy * s_w_g[None]                                          # (M, G, Ng)
            gpatch = torch.zeros((M, G, K), dtype=torch.float32, device=a.device)
            ncols = max(1, min(Ng, CHUNK_ELEMS // (G * K * R)))
            for n0 in range(0, Ng, ncols):
                n1 = min(Ng, n0 + ncols)
                tab = grad_a[:, w_idx[:, :, n0:n1]].permute(1, 2, 0, 3).reshape(G * K * R, -1)
                step = max(1, CHUNK_ELEMS // (G * K * (n1 - n0)))
                for m0 in range(0, M, step):
                    rows = tab[flat[m0:m0 + step]]                         # (m, G, K, nc)
                    gpatch[m0:m0 + step] += torch.einsum("mgkn,mgn->mgk", rows, gs[m0:m0 + step, :, n0:n1])
            gpatch += (gs * n_w[None]).sum(dim=2, keepdim=True)
            gx = self._fold(gpatch, p)
        if need_w:
            gwt = torch.zeros((G, K, Ng), dtype=torch.float32, device=a.device)
            ncols = max(1, min(Ng, CHUNK_ELEMS // (G * K * R)))
            for n0 in range(0, Ng, ncols):
                n1 = min(Ng, n0 + ncols)
                H = torch.zeros((G * K * R, n1 - n0), dtype=torch.float32, device=a.device)
                step = max(1, CHUNK_ELEMS // (G * K * (n1 - n0)))
                for m0 in range(0, M, step):
                    src = gy[m0:m0 + step, :, None, n0:n1].expand(-1, G, K, n1 - n0)
                    H.index_add_(0, flat[m0:m0 + step].reshape(-1), src.reshape(-1, n1 - n0))
                H = H.view(G, K, R, n1 - n0)
                gtab = grad_w[:, w_idx[:, :, n0:n1]].permute(1, 2, 0, 3)   # (G, K, R, nc)
                gwt[:, :, n0:n1] = (gtab * H).sum(dim=2)
            gwt += p.n_a * gy.sum(dim=0)[:, None, :]
            gwt *= s_a
            OC, Cg, kh, kw = p.qw.shape
            gw = gwt.permute(0, 2, 1).reshape(OC, Cg, kh, kw)
        return gx, gw

    @staticmethod
    def _fold(gpatch: torch.Tensor, p: IntConvProblem) -> torch.Tensor:
        B, C, H, W = p.qa.shape
        kh, kw = p.qw.shape[2], p.qw.shape[3]
        g = p.geometry
        oh, ow = g.output_hw(H, W, kh, kw)
        M, G, K = gpatch.shape
        cols = gpatch.reshape(B, oh * ow, G * K).permute(0, 2, 1)
        return F.fold(cols, (H, W), (kh, kw), dilation=g.dilation, padding=g.padding, stride=g.stride)


register_backend(Backend.TORCH)(TorchBackend)
