"""The ``decomposed`` backend: exact tensor-core factorisation of the LUT, and GPU ``auto``.

When a LUT is first seen, :func:`factorisation_for` searches its cheapest exact factorisation
(:mod:`axcnn.ops.gpu.factor`: integer low rank through a lattice basis, or bit planes)

    LUT[a, w] = sum_t s_t U_t[a] V_t[w] + alpha[a] + beta[w],   U_t, V_t int8

and the LUT GEMM becomes ``sum_t s_t U_t(A) @ V_t(W)`` -- int8 x int8 -> int32 tensor-core
GEMMs, bit-identical to the LUT -- plus row sums of alpha(A) and column constants. On CUDA with
Triton the whole thing is one fused kernel (implicit im2col, the U_t gathered in the kernel,
all terms in one pass, cross terms and dequantisation in the epilogue); on the CPU (and on CUDA
without Triton) it runs as float64 GEMMs, which are exact for these integer operands, so the
factorisation is tested by the CPU suite.

A LUT without a cheap exact factorisation (error rank above ``factor.MAX_RANK`` and no bit-plane
structure) cannot run here: explicit requests raise ``BackendUnavailable``. The *approximate*
fast mode (truncated SVD of the error, float-scaled int8 terms, rounded result) is used only
for tables registered with :func:`use_approximation`, which returns the residual error.

Error-aware gradients use the same structure: the gradient tables of a factorised LUT are
(numerically) combinations of its factors, dA[a, w] = sum_j cA_j[a] Vb_j[w] and
dW[a, w] = sum_i Ub_i[a] cW_i[w]; the coefficients are fitted once (least squares, checked
against the tables), and the gradients become a few ordinary convolution gradients
(``conv2d_input`` / ``conv2d_weight``, cuDNN on the GPU) of element-wise mapped operands.

``auto`` on CUDA is :class:`AutoGPUBackend`: per layer it picks the backend the cost model
(:func:`predict_seconds`) says is fastest among the exact ones (this one when a factorisation
exists, else the ``triton`` LUT kernels).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.grad import conv2d_input, conv2d_weight

from ..errors import BackendUnavailable
from .backends import Backend, cache_freed, register_backend
from .gpu.factor import MAX_RANK, Factorisation, factorise, truncated_svd
from .problem import IntConvProblem
from .torch_backend import (TorchBackend, memo_per_tensors, output_layout, unfold_codes,
                            weight_codes)
from .triton_backend import WeightCache

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# factorisation cache (per LUT tensor; the search runs once per distinct table content)


@dataclass
class FactorEntry:
    sha: str
    signed: bool
    factorisation: Factorisation | None   # None: no cheap exact factorisation
    rank: int
    device: dict                          # str(device) -> DeviceFactorisation
    grad: dict                            # (id grad_a, id grad_w) -> GradBases | None


_BY_CONTENT: dict[tuple[str, bool], FactorEntry] = {}
_BY_TENSOR: dict = {}
_APPROX: dict[str, tuple[int, Factorisation]] = {}


def _content(table) -> tuple[np.ndarray, str]:
    arr = table.detach().cpu().numpy() if isinstance(table, torch.Tensor) else np.asarray(table)
    arr = np.ascontiguousarray(arr.astype(np.int64))
    return arr, hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()


def factorisation_for(table: torch.Tensor, signed: bool) -> FactorEntry:
    """The (cached) factorisation entry of a LUT tensor. ``signed``: the table's index offsets
    are 2^(b-1) (needed to know which index is the code 0)."""
    return memo_per_tensors(_BY_TENSOR, (table,), (tuple(table.shape), str(table.device), signed),
                            lambda: _entry_for(table, signed), 256, on_clear=cache_freed)


def _entry_for(table: torch.Tensor, signed: bool) -> FactorEntry:
    """The factorisation entry of a table's content (searched once per content)."""
    arr, sha = _content(table)
    entry = _BY_CONTENT.get((sha, signed))
    if entry is None:
        f = factorise(arr, signed)
        rank = f.rank if f is not None else -1
        if f is None:
            from .gpu.factor import operand_values
            R, C = arr.shape
            av = operand_values(R.bit_length() - 1, signed)
            wv = operand_values(C.bit_length() - 1, signed)
            rank = int(np.linalg.matrix_rank((arr - np.outer(av, wv)).astype(np.float64)))
        entry = FactorEntry(sha, signed, f, rank, {}, {})
        _BY_CONTENT[(sha, signed)] = entry
        log.info("LUT %s: %s", sha[:8], f.describe() if f else f"no cheap exact factorisation "
                 f"(error rank {rank})")
    return entry


def use_approximation(lut, rank: int) -> dict:
    """Opt in to the approximate fast mode for ``lut`` (a MultiplierLUT, tensor or array):
    the decomposed backend then uses the exact product plus the ``rank`` largest singular terms
    of the error (int8-quantized) for every table with this content. Returns the residual
    error report (per product, against the LUT). Results are no longer bit-exact."""
    table = getattr(lut, "table", lut)
    signed = bool(getattr(lut, "signed", False))
    arr, sha = _content(table)
    f = truncated_svd(arr, signed, int(rank))
    _APPROX[sha] = (int(rank), f)
    log.warning("decomposed backend: APPROXIMATE mode for LUT %s (rank %d): max |error| %.3g, "
                "mean |error| %.3g per product", sha[:8], rank, f.residual["max_abs"],
                f.residual["mean_abs"])
    return dict(f.residual)


def clear_approximations() -> None:
    _APPROX.clear()
    cache_freed()


# --------------------------------------------------------------------------------------------
# cost model

#: cost-model constants, fitted to the CUDA-graph timings of benchmarks/gpu_kernels.py on an
#: H100 80GB HBM3 (2026-11-26, run 7: every ResNet/VGG shape, per-call weight tables, int64
#: outputs; see benchmarks/GPU_NOTES.md); only their ratios matter for the choice.
RATES = {
    "lut_tap": 3.6e12,       # MAC/s of the per-tap LUT kernel
    "lut_direct": 0.25e12,   # MAC/s of the direct-gather LUT kernel
    "lut_dw": 0.25e12,       # MAC/s of the depthwise kernel (not measured; direct-like)
    "lut_out": 3.8e-12,      # s per output element of the LUT kernel (its epilogue stores)
    "lut_fixed": 3.4e-6,     # s of GPU time per LUT call beyond the above (two launches)
    "bytes": 5.9e11,         # B/s for building per-call tables (the LUT kernel's prep launch)
    "tc_elem": 3.9e-13,      # s per activation byte read per term and N tile by the TC kernel
    "tc_mac": 6.2e-15,       # s per padded MAC per int8 GEMM term of the TC kernel
    "tc_map": 3.2e-13,       # s per padded input element x (terms + 4) of the TC map pass
    "tc_out": 6.5e-12,       # s per output element of the TC kernel
    "tc_fixed": 1.14e-5,     # s of GPU time per TC call beyond the above (three launches)
    "intmm": 1.25e14,        # MAC/s per term of the cuBLAS int8 path (4096^3 GEMM)
    "glue": 3.45e11,         # B/s of the torch glue around the cuBLAS int8 path
    "fixed": 2.0e-4,         # s of launches and host work per call (host-bound on small layers)
}


def predict_seconds(shape, backend: str, n_terms: int = 1, R: int = 256) -> float:
    """Predicted time of one conv/GEMM on the GPU ('lut' or 'tc' with ``n_terms`` GEMMs)."""
    from .triton_backend import TAP_TABLE_MAX, padded_n

    macs = shape.M * shape.K * shape.OC
    if backend == "lut":
        if shape.Cg == 1 and shape.G > 1:
            return macs / RATES["lut_dw"] + RATES["lut_fixed"] + RATES["fixed"]
        NP = padded_n(shape.Ng)
        tbytes = shape.G * shape.K * R * NP * 2
        fixed = shape.M * shape.OC * RATES["lut_out"] + RATES["lut_fixed"] + RATES["fixed"]
        if tbytes <= TAP_TABLE_MAX or shape.G == 1:
            return macs / RATES["lut_tap"] + tbytes / RATES["bytes"] + fixed
        return macs / RATES["lut_direct"] + fixed
    if shape.G == 1 and shape.kh == shape.kw == 1 and shape.H == shape.W == 1 and \
            min(shape.M, shape.K, shape.OC) >= 64:
        glue = shape.M * shape.K * n_terms * 3 / RATES["glue"]
        return macs * n_terms / RATES["intmm"] + glue + 2 * RATES["fixed"]
    from .triton_backend import tc_tiles

    NP = padded_n(shape.Ng, 128 if shape.Ng > 64 else 64)
    BN = NP if NP <= 128 else 128
    _, BK, _, n_kt = tc_tiles(shape)
    elems = shape.M * n_kt * BK * shape.G         # activation bytes read per term and N tile
    padded = shape.B * (shape.H + 2 * shape.padding[0]) * (shape.W + 2 * shape.padding[1])
    return (elems * (NP // BN) * n_terms * RATES["tc_elem"]
            + elems * NP * n_terms * RATES["tc_mac"]
            + padded * shape.C * (n_terms + 4) * RATES["tc_map"]
            + shape.M * shape.OC * RATES["tc_out"] + RATES["tc_fixed"] + RATES["fixed"])


# --------------------------------------------------------------------------------------------
# exact factorised GEMM with torch ops (CPU; CUDA without Triton)

def factor_gemm_torch(a_idx: torch.Tensor, w_idx: torch.Tensor, f: Factorisation) -> torch.Tensor:
    """sum_t s_t U_t(a) @ V_t(w) + rowsum alpha(a) + colsum beta(w): (M,G,K) x (G,K,N) -> int64
    (M,G,N). float64 GEMMs are exact here (|partial sums| <= K * 2^14 << 2^53)."""
    dev = a_idx.device
    M, G, K = a_idx.shape
    N = w_idx.shape[2]
    a_t = a_idx.permute(1, 0, 2)                                      # (G, M, K)
    out = torch.zeros((G, M, N), dtype=torch.int64, device=dev)
    if f.float_scales is not None:
        acc = torch.zeros((G, M, N), dtype=torch.float64, device=dev)
        for t, sc in zip(f.terms, f.float_scales):
            U = torch.as_tensor(t.u, dtype=torch.float64, device=dev)
            V = torch.as_tensor(t.v, dtype=torch.float64, device=dev)
            acc += float(sc) * torch.matmul(U[a_t], V[w_idx])
        out += acc.round().to(torch.int64)
    else:
        by_scale: dict[int, torch.Tensor] = {}
        for t in f.terms:
            U = torch.as_tensor(t.u, dtype=torch.float64, device=dev)
            V = torch.as_tensor(t.v, dtype=torch.float64, device=dev)
            part = torch.matmul(U[a_t], V[w_idx])
            by_scale[t.scale] = part if t.scale not in by_scale else by_scale[t.scale] + part
        for sc, part in by_scale.items():
            out += sc * part.round().to(torch.int64)
    alpha = torch.as_tensor(f.alpha, dtype=torch.int64, device=dev)
    beta = torch.as_tensor(f.beta, dtype=torch.int64, device=dev)
    out += alpha[a_t].sum(dim=2, keepdim=True)
    out += beta[w_idx].sum(dim=1)[:, None, :]
    return out.permute(1, 0, 2).contiguous()


# --------------------------------------------------------------------------------------------
# error-aware gradient bases

@dataclass
class GradBases:
    """dA = sum_j coefA[j][a] * vb[j][w]  and  dW = sum_i ub[i][a] * coefW[i][w] (float32)."""

    vb: list[np.ndarray]
    coefA: list[np.ndarray]
    ub: list[np.ndarray]
    coefW: list[np.ndarray]
    ub_const: np.ndarray     # coefficient row of the constant a-basis (over w)
    residual: float
    _on_device: dict = field(default_factory=dict, repr=False, compare=False)

    def tensors(self, device) -> dict[str, list[torch.Tensor]]:
        """The tables as float32 tensors on ``device`` (copied once per device: a copy from
        pageable host memory per call could make the host wait for the GPU)."""
        key = str(device)
        hit = self._on_device.get(key)
        if hit is None:
            def conv(a):
                return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)
            hit = self._on_device[key] = {
                name: [conv(a) for a in getattr(self, name)]
                for name in ("vb", "coefA", "ub", "coefW")}
            hit["ub_const"] = [conv(self.ub_const)]
        return hit


def fit_grad_bases(f: Factorisation, grad_a: np.ndarray, grad_w: np.ndarray,
                   rtol: float = 2e-6) -> GradBases | None:
    """Fit the gradient tables on the factorisation's operand functions; None if they are not
    (numerically) in that span."""
    ga = np.asarray(grad_a, dtype=np.float64)
    gw = np.asarray(grad_w, dtype=np.float64)
    R, C = ga.shape
    wf = [y.astype(np.float64) for y in f.w_funcs] + [np.ones(C)]
    af = [x.astype(np.float64) for x in f.a_funcs] + [np.ones(R)]
    Vb = np.stack(wf, axis=1)                                         # (C, J)
    Ub = np.stack(af, axis=1)                                         # (R, I)
    cA, *_ = np.linalg.lstsq(Vb, ga.T, rcond=None)                    # (J, R)
    cW, *_ = np.linalg.lstsq(Ub, gw, rcond=None)                      # (I, C)
    resA = np.abs(Vb @ cA - ga.T).max()
    resW = np.abs(Ub @ cW - gw).max()
    scale = max(1.0, np.abs(ga).max(), np.abs(gw).max())
    res = float(max(resA, resW) / scale)
    if res > rtol:
        return None
    vb, coefA = [], []
    for j in range(Vb.shape[1] - 1):
        if np.abs(cA[j]).max() > 0:
            vb.append(Vb[:, j])
            coefA.append(cA[j])
    const_a = cA[-1]
    ub, coefW = [], []
    for i in range(Ub.shape[1] - 1):
        if np.abs(cW[i]).max() > 0:
            ub.append(Ub[:, i])
            coefW.append(cW[i])
    if np.abs(const_a).max() > 0:
        vb.append(np.ones(C))
        coefA.append(const_a)
    return GradBases(vb, coefA, ub, coefW, cW[-1], res)


def _stacked_conv_input(x_shape, weights: list[torch.Tensor], grad_y, g) -> list[torch.Tensor]:
    if not weights:
        return []
    if g.groups == 1 and len(weights) > 1:
        B, C, H, W = x_shape
        wcat = torch.cat(weights, dim=1)
        out = conv2d_input((B, C * len(weights), H, W), wcat, grad_y, g.stride, g.padding,
                           g.dilation, 1)
        return list(out.view(B, len(weights), C, H, W).unbind(1))
    return [conv2d_input(x_shape, w, grad_y, g.stride, g.padding, g.dilation, g.groups)
            for w in weights]


def _stacked_conv_weight(inputs: list[torch.Tensor], w_shape, grad_y, g) -> list[torch.Tensor]:
    if not inputs:
        return []
    if g.groups == 1 and len(inputs) > 1:
        OC, Cg, kh, kw = w_shape
        xcat = torch.cat(inputs, dim=1)
        out = conv2d_weight(xcat, (OC, Cg * len(inputs), kh, kw), grad_y, g.stride, g.padding,
                            g.dilation, 1)
        return list(out.view(OC, len(inputs), Cg, kh, kw).unbind(1))
    return [conv2d_weight(x, w_shape, grad_y, g.stride, g.padding, g.dilation, g.groups)
            for x in inputs]


def factorised_error_aware_grads(p: IntConvProblem, gb: GradBases, grad_y, s_a, s_w,
                                 need_x: bool, need_w: bool):
    """Error-aware gradients as a few convolution gradients (see the module docstring)."""
    dev = p.qa.device
    g = p.geometry
    a_idx = (p.qa + p.a_offset).round().to(torch.int64)
    w_idx = (p.qw + p.w_offset).round().to(torch.int64)
    grad_y = grad_y.float()
    OC = p.qw.shape[0]
    gx = gw = None
    tabs = gb.tensors(dev)
    if need_x:
        sw = (s_w.view(-1, 1, 1, 1) if s_w.ndim else s_w).float().to(dev)
        weights = [sw * vb[w_idx] for vb in tabs["vb"]]
        coefs = tabs["coefA"]
        n_w = p.n_w.reshape(-1).to(dev).float()
        if n_w.numel() == 1:
            n_w = n_w.expand(OC)
        # unsigned weights have zero points (signed ones none); reading them back would sync
        has_nw = (not p.signed) if p.signed is not None else bool(n_w.numel() and n_w.abs().max() > 0)
        if has_nw:
            weights.append((sw * n_w.view(-1, 1, 1, 1)).expand_as(p.qw).contiguous())
        parts = _stacked_conv_input(p.qa.shape, weights, grad_y, g)
        gx = torch.zeros(p.qa.shape, dtype=torch.float32, device=dev)
        for j, part in enumerate(parts):
            if j < len(coefs):
                gx += coefs[j][a_idx] * part
            else:
                gx += part
    if need_w:
        if isinstance(p.n_a, torch.Tensor):     # the index of real zero, kept on the device
            pad_idx = (int(p.a_offset) - p.n_a.reshape(1).round()).to(torch.int64)
        else:
            pad_idx = -int(round(float(p.n_a))) + int(p.a_offset)
        S1 = grad_y.sum(dim=(0, 2, 3)).view(-1, 1, 1, 1).expand(p.qw.shape)
        inputs, pads = [], []
        for t in tabs["ub"]:
            pv = t[pad_idx]                     # a tensor: no read back
            inputs.append(t[a_idx] - pv)
            pads.append(pv)
        parts = _stacked_conv_weight(inputs, p.qw.shape, grad_y, g)
        gwt = torch.zeros(p.qw.shape, dtype=torch.float32, device=dev)
        for part, pv, cw in zip(parts, pads, tabs["coefW"]):
            Si = part + pv * S1
            gwt += cw[w_idx] * Si
        const = tabs["ub_const"][0][w_idx]
        gwt += (const + p.n_a) * S1
        gwt *= s_a.to(dev)
        gw = gwt
    return gx, gw


# --------------------------------------------------------------------------------------------
# the backend

def _signedness_from_offsets(p: IntConvProblem) -> bool:
    return int(p.a_offset) > 0 or int(p.w_offset) > 0


def _triton_ok(device: torch.device) -> bool:
    if device.type != "cuda" and not (device.type == "cpu" and _interp()):
        return False
    from .triton_backend import device_ok
    return device_ok(device) is None


def _interp() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET", "") == "1" and \
        os.environ.get("AXCNN_DECOMPOSED_TRITON_ON_CPU", "") == "1"


class DecomposedBackend(TorchBackend):
    kind = Backend.DECOMPOSED

    def supports(self, device: torch.device) -> str | None:
        device = torch.device(device)
        if device.type in ("cpu", "cuda"):
            if device.type == "cuda" and not torch.cuda.is_available():
                return "CUDA is not available"
            return None
        return f"the decomposed backend runs on CPU and CUDA devices, not {device.type}"

    # ---- factorisation lookup ----------------------------------------------------------------
    def factorisation(self, p: IntConvProblem, signedness: tuple[bool, bool] | None = None
                      ) -> tuple[Factorisation, FactorEntry | None]:
        """The factorisation to run ``p`` with (and its cache entry; None for exact products,
        whose code signedness may be passed in to avoid reading it again)."""
        if p.table is None:
            from .triton_backend import exact_factorisation

            a_s, w_s = signedness or self._code_signedness(p)
            return exact_factorisation(a_s, w_s), None
        entry = factorisation_for(p.table, _signedness_from_offsets(p))
        approx = _APPROX.get(entry.sha)
        if approx is not None:
            return approx[1], entry
        if entry.factorisation is None:
            raise BackendUnavailable(
                f"backend 'decomposed' cannot run this LUT exactly: its error has rank "
                f"{entry.rank} (> {MAX_RANK}) and no bit-plane structure, so it has no cheap "
                "exact factorisation; use backend 'triton' (GPU) or 'torch', or opt in to the "
                "approximate mode with axcnn.ops.decomposed.use_approximation(lut, rank)")
        return entry.factorisation, entry

    @staticmethod
    def _code_signedness(p: IntConvProblem) -> tuple[bool, bool]:
        from .triton_backend import code_signedness
        return code_signedness(p)

    @functools.cached_property
    def weight_cache(self) -> WeightCache:
        """This instance's weight-side cache for the fused kernel (created on first use)."""
        return WeightCache()

    # ---- forward -----------------------------------------------------------------------------
    def conv2d_acc(self, p: IntConvProblem) -> torch.Tensor:
        return self._forward(p, None, None, None)

    def conv2d_dequant(self, p: IntConvProblem, s_a, s_w, bias=None) -> torch.Tensor:
        return self._forward(p, s_a, s_w, bias)

    def _forward(self, p: IntConvProblem, s_a, s_w, bias):
        if p.table is None:
            a_s, w_s = self._code_signedness(p)
            f, entry = self.factorisation(p, (a_s, w_s))
            a_off, w_off = (128 if a_s else 0), (128 if w_s else 0)
        else:
            f, entry = self.factorisation(p)
            a_off, w_off = int(p.a_offset), int(p.w_offset)
        dev = p.qa.device
        if f.exact and _triton_ok(dev):
            from . import triton_backend as tb

            s = tb.ConvShape.of(p)
            df = self._device_factorisation(f, entry, dev)
            act = tb.activation_operand(p.qa, a_off, tb.CONFIG["tc"]["a_index"])
            cargs = tb.column_args(p.n_a, p.n_w, s.OC, dev, s_a, s_w, bias)
            return tb.run_tc_conv(act, p.qw, df, s, cargs, a_off, w_off,
                                  cache=self.weight_cache, wkey=p.qw)
        acc = self._acc_torch(p, f, a_off, w_off)
        if s_a is None:
            return acc
        from .triton_backend import dequant_torch
        scale = s_a.to(dev).double() * s_w.to(dev).double().reshape(-1)
        scale = scale.expand(acc.shape[1]).contiguous() if scale.numel() == 1 else scale
        return dequant_torch(acc, scale, bias, False)

    def _device_factorisation(self, f: Factorisation, entry: FactorEntry | None, dev):
        from .triton_backend import DeviceFactorisation, exact_device_factorisation

        if entry is None:   # exact product
            a_s = f.a_funcs[0][0] < 0
            w_s = f.w_funcs[0][0] < 0
            return exact_device_factorisation(bool(a_s), bool(w_s), dev)
        df = entry.device.get(str(dev))
        if df is None:
            df = DeviceFactorisation.build(f, dev)
            entry.device[str(dev)] = df
        return df

    def _acc_torch(self, p: IntConvProblem, f: Factorisation, a_off: int, w_off: int):
        a = unfold_codes(p)                                           # (M, G, K) float codes
        w = weight_codes(p.qw, p.geometry.groups)                     # (G, K, Ng)
        M, G, K = a.shape
        a_idx = (a + a_off).round().to(torch.int64)
        w_idx = (w + w_off).round().to(torch.int64)
        acc = factor_gemm_torch(a_idx, w_idx, f)
        n_w = p.n_w.reshape(-1).to(a.device)
        n_w = (n_w.expand(p.qw.shape[0]) if n_w.numel() == 1 else n_w).reshape(G, -1)
        n_w_i = n_w.round().to(torch.int64)
        n_a_i = int(round(float(p.n_a)))
        sum_a = (a_idx - a_off).sum(dim=2)
        sum_w = (w_idx - w_off).sum(dim=1)
        acc += sum_a[:, :, None] * n_w_i[None] + n_a_i * sum_w[None] + K * n_a_i * n_w_i[None]
        return output_layout(acc, p)

    def lut_gemm(self, a_idx, w_idx, table):
        signed = False   # offsets do not matter for a plain LUT GEMM (no zero points)
        entry = factorisation_for(table, signed)
        f = entry.factorisation
        approx = _APPROX.get(entry.sha)
        if approx is not None:
            f = approx[1]
        if f is None:
            raise BackendUnavailable(
                f"backend 'decomposed' cannot run this LUT exactly (error rank {entry.rank}); "
                "use backend 'triton' or 'torch'")
        dev = a_idx.device
        M, G, K = a_idx.shape
        N = w_idx.shape[2]
        if f.exact and dev.type == "cuda" and G == 1 and min(M, K, N) >= 64:
            from . import triton_backend as tb

            df = self._device_factorisation(f, entry, dev)
            return tb.intmm_gemm(a_idx[:, 0, :], w_idx[0], df)[:, None, :]
        if f.exact and _triton_ok(dev):
            from . import triton_backend as tb

            s = tb.ConvShape.gemm(M, G, K, N)
            df = self._device_factorisation(f, entry, dev)
            return tb.run_tc_conv(tb.gemm_operand(a_idx), lambda: tb.gemm_weights_as_conv(w_idx),
                                  df, s, tb.column_args(0, None, G * N, dev), 0, 0, gemm=True,
                                  cache=self.weight_cache, wkey=w_idx)
        return factor_gemm_torch(a_idx.to(torch.int64), w_idx.to(torch.int64), f)

    # ---- error-aware backward ------------------------------------------------------------------
    def grad_bases(self, p: IntConvProblem, grad_a, grad_w) -> GradBases | None:
        f, entry = self.factorisation(p)
        if entry is None or not f.exact:
            return None
        key = (id(grad_a), id(grad_w))
        hit = entry.grad.get(key)
        if hit is not None and hit[0]() is grad_a and hit[1]() is grad_w:
            return hit[2]
        gb = fit_grad_bases(f, grad_a.detach().cpu().numpy(), grad_w.detach().cpu().numpy())
        entry.grad[key] = (weakref.ref(grad_a), weakref.ref(grad_w), gb)
        return gb

    def error_aware_grads(self, p: IntConvProblem, grad_y, s_a, s_w, lut,
                          need_x: bool, need_w: bool):
        gb = self.grad_bases(p, lut.grad_a, lut.grad_w)
        if gb is None:
            return super().error_aware_grads(p, grad_y, s_a, s_w, lut, need_x, need_w)
        return factorised_error_aware_grads(p, gb, grad_y, s_a, s_w, need_x, need_w)


register_backend(Backend.DECOMPOSED)(DecomposedBackend)


# --------------------------------------------------------------------------------------------
# auto on the GPU

class AutoGPUBackend:
    """Per-layer choice among the exact GPU backends by the cost model (``auto`` on CUDA)."""

    kind = Backend.AUTO

    def __init__(self, triton_impl, decomposed_impl) -> None:
        self.triton = triton_impl
        self.decomposed = decomposed_impl
        self.last_choice: str | None = None

    def supports(self, device) -> str | None:
        return self.triton.supports(device)

    def choose(self, p: IntConvProblem):
        from .triton_backend import ConvShape

        s = ConvShape.of(p)
        if s.Cg == 1 and s.G > 1:
            return self.triton            # depthwise kernel
        if p.table is None:
            return self.triton            # exact products: tensor-core kernel either way
        entry = factorisation_for(p.table, _signedness_from_offsets(p))
        f = entry.factorisation
        if f is None:
            return self.triton
        R = p.table.shape[0]
        t_tc = predict_seconds(s, "tc", f.n_gemms, R)
        t_lut = predict_seconds(s, "lut", 1, R)
        return self.decomposed if t_tc < t_lut else self.triton

    def conv2d_acc(self, p):
        impl = self.choose(p)
        self.last_choice = impl.kind.value
        return impl.conv2d_acc(p)

    def conv2d_dequant(self, p, s_a, s_w, bias=None):
        impl = self.choose(p)
        self.last_choice = impl.kind.value
        return impl.conv2d_dequant(p, s_a, s_w, bias)

    def lut_gemm(self, a_idx, w_idx, table):
        from .triton_backend import ConvShape

        M, G, K = a_idx.shape
        s = ConvShape.gemm(M, G, K, w_idx.shape[2])
        f = factorisation_for(table, False).factorisation
        if f is not None and predict_seconds(s, "tc", f.n_gemms) < predict_seconds(s, "lut"):
            return self.decomposed.lut_gemm(a_idx, w_idx, table)
        return self.triton.lut_gemm(a_idx, w_idx, table)

    def error_aware_grads(self, p, grad_y, s_a, s_w, lut, need_x, need_w):
        if p.table is not None:
            entry = factorisation_for(p.table, _signedness_from_offsets(p))
            if entry.factorisation is not None and not (p.qw.shape[1] == 1 and p.geometry.groups > 1):
                gb = self.decomposed.grad_bases(p, lut.grad_a, lut.grad_w)
                if gb is not None and len(gb.vb) + len(gb.ub) <= 10:
                    return factorised_error_aware_grads(p, gb, grad_y, s_a, s_w, need_x, need_w)
        return self.triton.error_aware_grads(p, grad_y, s_a, s_w, lut, need_x, need_w)


_AUTO: dict = {}


def gpu_auto_backend(device: torch.device):
    """The AUTO backend for a CUDA device, or None where the triton backend cannot run."""
    from .backends import _load

    try:
        tri = _load(Backend.TRITON)
    except BackendUnavailable:
        return None
    if tri.supports(device) is not None:
        return None
    key = str(device)
    if key not in _AUTO:
        _AUTO[key] = AutoGPUBackend(tri, _REGISTRY_SELF())
    return _AUTO[key]


def _REGISTRY_SELF():
    from .backends import _REGISTRY
    return _REGISTRY[Backend.DECOMPOSED]
