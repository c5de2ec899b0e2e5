"""Operand statistics: exact histograms of (activation code, weight code) pairs.

``record_operands(model)`` is a context manager; while it is open every quantized or
approximate layer adds, for each output channel o, the count of every (a, w) code pair it
multiplies (all positions, all taps, padding taps included: they are real multiplications by
the code of zero) into an int64 tensor of shape (OC, 2^a_bits, 2^w_bits) indexed like the LUT
(signed codes offset by 2^(b-1)). On exit the histograms are saved once, if a path was given,
as one ``.npz`` with an array per layer name and a ``__meta__`` JSON entry.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..fileio import atomic_path
from ..ops.functional import quantize_weight
from ..ops.problem import ConvGeometry, IntConvProblem
from ..ops.torch_backend import CHUNK_ELEMS, weight_codes
from ..quant import quantize


def _gpu_tap_histogram(qa, qw, geometry, a_bits, a_off, n_a):
    """Per-tap activation histograms (G, K, R) from the Triton kernel on CUDA (implicit
    im2col, no unfolded copy), or None where it cannot run (then bincount is used)."""
    if not qa.is_cuda:
        return None
    from ..ops.triton_backend import device_ok, tap_histogram

    if device_ok(qa.device) is not None:
        return None
    return tap_histogram(qa, qw.shape, geometry.groups, geometry, a_bits, a_off, n_a)


def tap_histogram_torch(qa: torch.Tensor, kh: int, kw: int, geometry: ConvGeometry, R: int,
                        a_off: int, n_a: float) -> torch.Tensor:
    """int64 (G, K, R) counts of activation index v at tap k = (c, ky, kx) of group g, over
    all output positions (padding taps count the index of the code of zero): one bincount
    per kernel position over a strided view of the padded indices, no unfolded copy."""
    B, C, H, W = qa.shape
    G = geometry.groups
    (ph, pw), (sh, sw), (dh, dw) = geometry.padding, geometry.stride, geometry.dilation
    oh, ow = geometry.output_hw(H, W, kh, kw)
    idx = F.pad((qa + a_off).round().to(torch.int64), (pw, pw, ph, ph),
                value=int(round(a_off - n_a)))
    chan = (torch.arange(C, device=qa.device) * R).view(1, C, 1, 1)
    out = torch.empty((C, kh, kw, R), dtype=torch.int64, device=qa.device)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            view = idx[:, :, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw]
            out[:, ky, kx] = torch.bincount((view + chan).reshape(-1),
                                            minlength=C * R).view(C, R)
    return out.view(G, (C // G) * kh * kw, R)


def operand_histogram(qa: torch.Tensor, qw: torch.Tensor, geometry: ConvGeometry,
                      a_bits: int, w_bits: int, signed: bool, n_a: float) -> torch.Tensor:
    """int64 (OC, 2^a, 2^w) counts of the code pairs a quantized conv multiplies.

    With ha[g, k, v] the count of activation code v at tap k of group g (all positions),
    out[g, o, v, c] = sum_k ha[g, k, v] [w[g, k, o] == c]: the product of a one-hot matrix
    (one entry per tap and output channel) with the tap histograms, computed as sparse float64
    matrix products (integer sums far below 2^53: exact), one per chunk of output channels."""
    p = IntConvProblem(qa, qw, n_a, torch.zeros(qw.shape[0], device=qw.device), geometry)
    a_off = (1 << (a_bits - 1)) if signed else 0
    w_off = (1 << (w_bits - 1)) if signed else 0
    w = (weight_codes(p) + w_off).to(torch.int64)          # (G, K, Ng)
    G, K, Ng = w.shape
    R, Cw = 1 << a_bits, 1 << w_bits
    dev = w.device
    ha = _gpu_tap_histogram(qa, qw, geometry, a_bits, a_off, n_a)
    if ha is None:
        ha = tap_histogram_torch(qa, qw.shape[2], qw.shape[3], geometry, R, a_off, n_a)
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
        onehot = torch.sparse_coo_tensor(
            torch.stack([rows[order], cols[order]]),
            torch.ones(rows.numel(), dtype=torch.float64, device=dev), (G * nc * Cw, G * K),
            check_invariants=False, is_coalesced=True)
        out[:, n0:n1] = torch.sparse.mm(onehot, ha).view(G, nc, Cw, R).transpose(2, 3)
    return out.view(G * Ng, R, Cw)


class OperandRecorder:
    """Accumulates per-layer operand histograms; see :func:`record_operands`."""

    def __init__(self) -> None:
        self.histograms: dict[str, torch.Tensor] = {}
        self.formats: dict[str, dict] = {}

    @torch.no_grad()
    def observe(self, layer: nn.Module, x: torch.Tensor, a_q, w_q, *, n_a: float | None = None,
                qw: torch.Tensor | None = None) -> None:
        """Add the operand histogram of one forward of ``layer`` on input ``x``.

        ``n_a`` (the activation zero point as a Python float) and ``qw`` (the weight codes in
        conv shape) are the layer's cached eval-mode values when it has them; None computes
        them here (``n_a`` then costs one host sync).
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
        qa = quantize(xx.detach(), a_q[0], a_q[1], spec.a_bits, spec.signed)
        if qw is None:
            qw = quantize_weight(ww, w_q, spec)
        hist = operand_histogram(qa, qw, geom, spec.a_bits, spec.w_bits, spec.signed,
                                 float(a_q[1]) if n_a is None else float(n_a))
        name = layer.layer_name
        if name in self.histograms:
            if self.histograms[name].shape != hist.shape:
                raise ValueError(f"layer '{name}' changed bit widths while recording")
            self.histograms[name] += hist
        else:
            self.histograms[name] = hist
            self.formats[name] = {"a_bits": spec.a_bits, "w_bits": spec.w_bits,
                                  "signed": spec.signed, "type": type(layer).__name__}

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
