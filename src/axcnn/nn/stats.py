"""Operand statistics: exact histograms of (activation code, weight code) pairs.

``record_operands(model)`` is a context manager; while it is open every quantized or
approximate layer adds, for each output channel o, the count of every (a, w) code pair it
multiplies (all positions, all taps, padding taps included: they are real multiplications by
the code of zero) into an int64 tensor of shape (OC, 2^a_bits, 2^w_bits) indexed like the LUT
(signed codes offset by 2^(b-1)). On exit the histograms are saved once, if a path was given,
as one ``.npz`` with an array per layer name and a ``__meta__`` JSON entry.

The same code runs on every device, in three exact steps: a forward scatter-adds its activation
codes into per-position counts (C, H, W, 2^a); the counts of each tap follow from two 0/1
matrix products (a tap reads a product of an input-row set and an input-column set); a sparse
one-hot matrix of the weight codes turns tap counts into per-channel pair counts. Only the
first step runs per batch: the other two are linear in the counts and run once per weight
state, when the histograms are read.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_path
from ..lut import index_offset
from ..ops.functional import quantize_weight
from ..ops.problem import ConvGeometry
from ..ops.torch_backend import CHUNK_ELEMS, weight_codes
from ..quant import quantize

MAX_PENDING_IMAGES = 2 ** 31 - 1   # position counts are int32: folded before one could overflow
MAX_POSITION_BYTES = 128 << 20     # a layer's position counts above this are folded every batch


def position_offsets(shape: tuple[int, int, int], R: int, a_off: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`position_histogram` adds to the codes ((1, C, H, W) offsets (c, y, x) * R +
    a_off, int32 where the counts' indices fit) and the one it scatters, made once per layer."""
    C, H, W = shape
    n = C * H * W * R
    itype = torch.int32 if n + R < 2 ** 31 else torch.int64
    base = torch.arange(a_off, n + a_off, R, dtype=itype, device=device).view(1, C, H, W)
    return base, torch.ones(1, dtype=torch.int32, device=device)


def position_histogram(qa: torch.Tensor, offsets: tuple[torch.Tensor, torch.Tensor],
                       out: torch.Tensor) -> torch.Tensor:
    """Add to ``out`` (C*H*W*R,) int32 the count of activation index v = code + a_off at each
    position (c, y, x) over the batch: one scatter-add over the activations, no host sync."""
    base, one = offsets
    flat = qa.to(base.dtype, copy=True).add_(base).view(-1)   # codes are exact integers in qa
    return out.index_add_(0, flat, one.expand(flat.numel()))


def _tap_rows(size: int, k: int, out_size: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """0/1 (k, size): row y of the input is read by kernel row ky at some output row."""
    m = np.zeros((k, size))
    for ky in range(k):
        y = np.arange(out_size) * stride + ky * dil - pad
        m[ky, y[(y >= 0) & (y < size)]] = 1.0
    return m


def tap_histogram(counts: torch.Tensor, shape: tuple[int, int, int], images: int, kh: int, kw: int,
                  geometry: ConvGeometry, R: int, pad_idx: int) -> torch.Tensor:
    """int64 (G, K, R) counts of activation index v at tap k = (c, ky, kx) of group g (F.unfold's
    order) over all output positions of ``images`` images, from their position counts.

    The positions tap (ky, kx) reads are a product of an input-row set and an input-column set,
    so the counts are two 0/1 matrix products (float64, exact: far below 2^53); each tap's reads
    outside the input count as ``pad_idx`` (the index of the code of zero)."""
    C, H, W = shape
    G = geometry.groups
    (ph, pw), (sh, sw), (dh, dw) = geometry.padding, geometry.stride, geometry.dilation
    oh, ow = geometry.output_hw(H, W, kh, kw)
    rows = _tap_rows(H, kh, oh, sh, ph, dh)
    cols = _tap_rows(W, kw, ow, sw, pw, dw)
    dev = counts.device
    out = torch.empty((C, kh, kw, R), dtype=torch.int64, device=dev)
    s = counts.view(C, H, W, R)
    mr = torch.from_numpy(rows).to(dev)
    mc = torch.from_numpy(cols).to(dev)
    step = max(1, CHUNK_ELEMS // (H * W * R))
    for c0 in range(0, C, step):
        part = s[c0:c0 + step].to(torch.float64)
        part = torch.einsum("chwr,xw->chxr", part, mc)
        out[c0:c0 + step] = torch.einsum("yh,chxr->cyxr", mr, part).to(torch.int64)
    pads = images * (oh * ow - np.outer(rows.sum(1), cols.sum(1))).astype(np.int64)
    out[:, :, :, pad_idx] += torch.from_numpy(pads).to(dev)
    return out.view(G, (C // G) * kh * kw, R)


def combine_taps(ha: torch.Tensor, qw: torch.Tensor, groups: int, a_bits: int, w_bits: int,
                 signed: bool) -> torch.Tensor:
    """int64 (OC, 2^a, 2^w) code-pair counts from the tap histograms ``ha`` (G, K, R).

    out[g, o, v, c] = sum_k ha[g, k, v] [w[g, k, o] == c]: the product of a one-hot matrix (one
    entry per tap and output channel) with the tap histograms, computed as sparse float64
    matrix products (integer sums far below 2^53: exact), one per chunk of output channels."""
    w = (weight_codes(qw, groups) + index_offset(w_bits, signed)).to(torch.int64)  # (G, K, Ng)
    G, K, Ng = w.shape
    R, Cw = 1 << a_bits, 1 << w_bits
    dev = w.device
    # one-hot rows (g, o, c = w[g, k, o]) x columns (g, k), one entry per tap and output
    # channel, each (row, column) once; sorted here, so the matrix is marked coalesced (on CUDA,
    # coalescing would wait for the device to count the distinct entries). Output channels
    # go in chunks that bound the float64 product to CHUNK_ELEMS elements.
    ha = ha.reshape(G * K, R).to(torch.float64)
    out = torch.empty((G, Ng, R, Cw), dtype=torch.int64, device=dev)
    step = max(1, CHUNK_ELEMS // (G * Cw * R))
    g_idx = torch.arange(G, device=dev).view(G, 1, 1)
    k_idx = torch.arange(K, device=dev).view(1, K, 1)
    for n0 in range(0, Ng, step):
        n1 = min(Ng, n0 + step)
        nc = n1 - n0
        o_idx = torch.arange(nc, device=dev).view(1, 1, nc)
        rows = ((g_idx * nc + o_idx) * Cw + w[:, :, n0:n1]).reshape(-1)
        cols = (g_idx * K + k_idx).expand(G, K, nc).reshape(-1)
        order = torch.argsort(rows * (G * K) + cols)
        with warnings.catch_warnings():   # torch warns (on CUDA) that checks are off: by design
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
            onehot = torch.sparse_coo_tensor(
                torch.stack([rows[order], cols[order]]),
                torch.ones(rows.numel(), dtype=torch.float64, device=dev), (G * nc * Cw, G * K),
                check_invariants=False, is_coalesced=True)
        out[:, n0:n1] = torch.sparse.mm(onehot, ha).view(G, nc, Cw, R).transpose(2, 3)
    return out.view(G * Ng, R, Cw)


def operand_histogram(qa: torch.Tensor, qw: torch.Tensor, geometry: ConvGeometry,
                      a_bits: int, w_bits: int, signed: bool, n_a: float) -> torch.Tensor:
    """int64 (OC, 2^a, 2^w) counts of the code pairs a quantized conv multiplies (activation
    codes ``qa`` (B, C, H, W), weight codes ``qw`` (OC, C/G, kh, kw), zero point ``n_a``)."""
    pend = _Pending(qw, n_a, tuple(qa.shape[1:]), geometry, a_bits, w_bits, signed)
    pend.add(qa)
    return pend.histogram()


@dataclass
class _Pending:
    """Counts of one layer not yet combined with its weights: valid while the layer runs with
    the same weight-code tensor, zero point and input shape. ``counts`` holds the position
    counts of the last ``images`` images; :meth:`reduce` folds them into the int64 tap counts
    ``taps`` and frees them."""

    qw: torch.Tensor
    n_a: float
    shape: tuple[int, int, int]
    geometry: ConvGeometry
    a_bits: int
    w_bits: int
    signed: bool
    counts: torch.Tensor | None = None
    images: int = 0
    taps: torch.Tensor | None = None

    def __post_init__(self) -> None:
        a_off = index_offset(self.a_bits, self.signed)
        self.R = 1 << self.a_bits
        self.pad_idx = int(round(a_off - self.n_a))    # the index of the code of real zero
        self.offsets = position_offsets(self.shape, self.R, a_off, self.qw.device)

    def add(self, qa: torch.Tensor) -> None:
        C, H, W = self.shape
        if self.counts is not None and self.images + qa.shape[0] > MAX_PENDING_IMAGES:
            self.reduce()                 # int32 counts: fold them before one could overflow
        if self.counts is None:
            with torch.inference_mode(False):   # a normal tensor: later batches may add outside
                self.counts = torch.zeros(C * H * W * self.R, dtype=torch.int32,
                                          device=qa.device)
        position_histogram(qa, self.offsets, self.counts)
        self.images += qa.shape[0]
        if self.counts.numel() * 4 > MAX_POSITION_BYTES:
            self.reduce()                 # large layers keep no position counts between batches

    def reduce(self) -> None:
        if self.counts is None:
            return
        taps = tap_histogram(self.counts, self.shape, self.images, self.qw.shape[2],
                             self.qw.shape[3], self.geometry, self.R, self.pad_idx)
        self.taps = taps if self.taps is None else self.taps + taps
        self.counts, self.images = None, 0

    def histogram(self) -> torch.Tensor:
        """int64 (OC, 2^a, 2^w) pair counts of everything added so far."""
        self.reduce()
        return combine_taps(self.taps, self.qw, self.geometry.groups, self.a_bits, self.w_bits,
                            self.signed)


class OperandRecorder:
    """Accumulates per-layer operand histograms; see :func:`record_operands`.

    A forward adds only its activation counts per input position: linear in the batch, they
    are combined with the weight codes (the expensive step) once per weight state, when the
    histograms are read or the layer's weights, zero point or input shape change. An eval-mode
    layer keeps one weight-code tensor, so a whole evaluation combines once per layer. The
    position counts take C*H*W*2^a int32 per layer between batches; a layer needing more than
    ``MAX_POSITION_BYTES`` folds them into its tap counts after every batch instead."""

    def __init__(self) -> None:
        self._histograms: dict[str, torch.Tensor] = {}
        self._pending: dict[str, _Pending] = {}
        self.formats: dict[str, dict] = {}

    @property
    def histograms(self) -> dict[str, torch.Tensor]:
        """int64 (OC, 2^a, 2^w) counts per layer name, everything recorded so far included."""
        for name in list(self._pending):
            self._flush(name)
        return self._histograms

    @torch.no_grad()
    def observe(self, layer: nn.Module, x: torch.Tensor, a_q, w_q, *, n_a: float | None = None,
                qw: torch.Tensor | None = None) -> None:
        """Add the operand counts of one forward of ``layer`` on input ``x``.

        ``n_a`` (the activation zero point as a Python float) and ``qw`` (the weight codes in
        conv shape) are the layer's cached eval-mode values when it has them; None computes
        them here (``n_a`` then costs one host sync; a fresh ``qw`` is combined at once).
        """
        spec = layer.spec
        if isinstance(layer, nn.Conv2d):
            xx, ww = x, layer.weight
            geom = ConvGeometry(tuple(layer.stride), tuple(layer.padding), tuple(layer.dilation),
                                layer.groups)
        else:
            xx = x.reshape(-1, x.shape[-1], 1, 1)
            ww = layer.weight.reshape(layer.weight.shape[0], -1, 1, 1)
            geom = ConvGeometry()
        name = layer.layer_name
        fmt = {"a_bits": spec.a_bits, "w_bits": spec.w_bits, "signed": spec.signed,
               "type": type(layer).__name__}
        if self.formats.setdefault(name, fmt) != fmt:
            raise ValueError(f"layer '{name}' changed its operand format (bits or signedness) "
                             "while recording")
        qa = quantize(xx.detach(), a_q[0], a_q[1], spec.a_bits, spec.signed)
        fresh = qw is None
        if fresh:
            qw = quantize_weight(ww, w_q, spec)
        n_a = float(a_q[1]) if n_a is None else float(n_a)
        B, C, H, W = qa.shape
        pend = self._pending.get(name)
        if pend is not None and not (pend.qw is qw and pend.n_a == n_a and pend.shape == (C, H, W)):
            self._flush(name)
            pend = None
        if pend is None:
            pend = self._pending[name] = _Pending(qw, n_a, (C, H, W), geom, spec.a_bits,
                                                  spec.w_bits, spec.signed)
        pend.add(qa)
        if fresh:
            self._flush(name)

    def _flush(self, name: str) -> None:
        """Combine a layer's pending counts with its weight codes."""
        hist = self._pending.pop(name).histogram()
        # out of place: either may be an inference tensor (recorded under torch.inference_mode)
        self._histograms[name] = hist + self._histograms[name] if name in self._histograms else hist

    def total(self) -> np.ndarray:
        """The sum over layers and channels (requires one operand format)."""
        arrays = [h.sum(dim=0).cpu().numpy() for h in self.histograms.values()]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"layers have different operand formats {shapes}")
        return np.sum(arrays, axis=0)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": "axcnn-operand-stats/1", "layers": self.formats}
        arrays = {name: h.cpu().numpy() for name, h in self.histograms.items()}
        with atomic_path(path, ".npz") as tmp:
            np.savez_compressed(tmp, __meta__=np.array(json.dumps(meta)), **arrays)
        return path


def load_operand_stats(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(histograms per layer, metadata) from a file written by :class:`OperandRecorder`."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
        return {k: z[k] for k in z.files if k != "__meta__"}, meta


@contextlib.contextmanager
def record_operands(model: nn.Module, path: str | os.PathLike | None = None) -> Iterator[OperandRecorder]:
    """Record operand histograms of every quantized/approximate layer inside the block."""
    from .layers import approx_layers

    rec = OperandRecorder()
    layers = approx_layers(model)
    for name, layer in layers:
        layer.layer_name = name
        layer.recorder = rec
    try:
        yield rec
    finally:
        for _, layer in layers:
            layer.recorder = None
    if path is not None:
        rec.save(path)
