"""The ``reference`` backend: plain loops over output elements, the executable spec.

Slow by design (use it on small shapes): every other backend must match it bit for bit.
Padding taps read the code of real zero; the zero-point cross terms are exact integers;
error-aware gradients follow the formulas of :mod:`axcnn.ops.functional` literally.
"""

from __future__ import annotations

import numpy as np
import torch

from .backends import Backend, register_backend
from .problem import IntConvProblem


def _np_int(t: torch.Tensor) -> np.ndarray:
    return np.rint(t.detach().cpu().double().numpy()).astype(np.int64)


def _tap_code(qa: np.ndarray, b: int, c: int, y: int, x: int, zero_code: int) -> int:
    H, W = qa.shape[2], qa.shape[3]
    if 0 <= y < H and 0 <= x < W:
        return int(qa[b, c, y, x])
    return zero_code


def _taps(p: IntConvProblem, qa: np.ndarray, b: int, o: int, oy: int, ox: int):
    """Yield (input channel, ky, kx, activation code) of the taps of output (b, o, oy, ox)."""
    OC, Cg, kh, kw = p.qw.shape
    g = p.geometry
    group = o // (OC // g.groups)
    zero_code = -int(round(float(p.n_a)))
    for ci in range(Cg):
        c = group * Cg + ci
        for ky in range(kh):
            for kx in range(kw):
                y = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0]
                x = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1]
                yield ci, ky, kx, c, y, x, _tap_code(qa, b, c, y, x, zero_code)


class ReferenceBackend:
    kind = Backend.REFERENCE

    def supports(self, device: torch.device) -> str | None:
        return None

    def lut_gemm(self, a_idx, w_idx, table):
        a = _np_int(a_idx)
        w = _np_int(w_idx)
        t = table.detach().cpu().numpy().astype(np.int64)
        M, G, K = a.shape
        N = w.shape[2]
        out = np.zeros((M, G, N), dtype=np.int64)
        for m in range(M):
            for g in range(G):
                for n in range(N):
                    out[m, g, n] = sum(int(t[a[m, g, k], w[g, k, n]]) for k in range(K))
        return torch.from_numpy(out).to(a_idx.device)

    def conv2d_acc(self, p: IntConvProblem) -> torch.Tensor:
        qa, qw = _np_int(p.qa), _np_int(p.qw)
        n_a = int(round(float(p.n_a)))
        n_w = _np_int(p.n_w)
        t = None if p.table is None else p.table.detach().cpu().numpy().astype(np.int64)
        B = qa.shape[0]
        OC, _, kh, kw = qw.shape
        oh, ow = p.geometry.output_hw(qa.shape[2], qa.shape[3], kh, kw)
        out = np.zeros((B, OC, oh, ow), dtype=np.int64)
        for b in range(B):
            for o in range(OC):
                for oy in range(oh):
                    for ox in range(ow):
                        acc = 0
                        for ci, ky, kx, _c, _y, _x, a in _taps(p, qa, b, o, oy, ox):
                            w = int(qw[o, ci, ky, kx])
                            if t is None:
                                acc += (a + n_a) * (w + int(n_w[o]))
                            else:
                                prod = int(t[a + p.a_offset, w + p.w_offset])
                                acc += prod + int(n_w[o]) * a + n_a * w + n_a * int(n_w[o])
                        out[b, o, oy, ox] = acc
        return torch.from_numpy(out).to(p.qa.device)

    def error_aware_grads(self, p: IntConvProblem, grad_y, s_a, s_w, lut,
                          need_x: bool, need_w: bool):
        qa, qw = _np_int(p.qa), _np_int(p.qw)
        n_a = float(p.n_a)
        n_w = p.n_w.detach().cpu().double().numpy()
        ga = lut.grad_a.detach().cpu().double().numpy()
        gwt = lut.grad_w.detach().cpu().double().numpy()
        gy = grad_y.detach().cpu().double().numpy()
        sw = s_w.detach().cpu().double().numpy()
        sw = np.broadcast_to(sw, (qw.shape[0],))
        sa = float(s_a)
        B, C, H, W = qa.shape
        gx = np.zeros((B, C, H, W))
        gw = np.zeros(qw.shape)
        OC = qw.shape[0]
        oh, ow = gy.shape[2], gy.shape[3]
        for b in range(B):
            for o in range(OC):
                for oy in range(oh):
                    for ox in range(ow):
                        g = gy[b, o, oy, ox]
                        for ci, ky, kx, c, y, x, a in _taps(p, qa, b, o, oy, ox):
                            w = int(qw[o, ci, ky, kx])
                            ia, iw = a + p.a_offset, w + p.w_offset
                            if 0 <= y < H and 0 <= x < W:
                                gx[b, c, y, x] += g * sw[o] * (ga[ia, iw] + n_w[o])
                            gw[o, ci, ky, kx] += g * sa * (gwt[ia, iw] + n_a)
        dev = p.qa.device
        return (torch.from_numpy(gx).float().to(dev) if need_x else None,
                torch.from_numpy(gw).float().to(dev) if need_w else None)


register_backend(Backend.REFERENCE)(ReferenceBackend)
