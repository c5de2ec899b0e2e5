"""Backend enum and the one registry/dispatcher of compute backends.

A backend implements the integer kernels of :mod:`axcnn.ops.problem`:

- ``lut_gemm(a_idx, w_idx, table)``: grouped LUT GEMM, a_idx (M, G, K) and w_idx (G, K, N)
  int64 table indices, returns int64 (M, G, N) with out = sum_k table[a_idx, w_idx]
- ``conv2d_acc(problem)``: int64 accumulators (B, OC, OH, OW) of a quantized conv
- ``error_aware_grads(problem, grad_y, s_a, s_w, lut, need_x, need_w)``: the gather-GEMM
  gradients of the error-aware rule from ``lut.grad_a`` / ``lut.grad_w`` (``lut`` a
  :class:`axcnn.ops.LUTTensors`; see :mod:`axcnn.ops.functional`)

``Backend.AUTO`` picks the fastest registered backend that supports the device (on CUDA a
per-layer dispatcher, :class:`axcnn.ops.decomposed.AutoGPUBackend`); a backend
asked for explicitly that cannot run raises ``BackendUnavailable``, never a silent fallback.
GPU backends register themselves here (``register_backend``) when their module is imported.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch

from ..choices import Choice
from ..errors import BackendUnavailable


_freed_generation = 0


def cache_freed() -> None:
    """Called by a GPU backend whose cache dropped device tensors (a clear, an eviction): a
    CUDA graph captured earlier may read them, so :class:`axcnn.nn.GraphedModel` captures again
    when :func:`cache_generation` moved."""
    global _freed_generation
    _freed_generation += 1


def cache_generation() -> int:
    """How many times a backend cache has dropped device tensors (see :func:`cache_freed`)."""
    return _freed_generation


class Backend(Choice):
    AUTO = "auto"
    REFERENCE = "reference"
    TORCH = "torch"
    TRITON = "triton"
    DECOMPOSED = "decomposed"


#: backend -> module that registers it on import (optional backends are imported lazily)
_MODULES = {
    Backend.REFERENCE: "axcnn.ops.reference",
    Backend.TORCH: "axcnn.ops.torch_backend",
    Backend.TRITON: "axcnn.ops.triton_backend",
    Backend.DECOMPOSED: "axcnn.ops.decomposed",
}
#: order in which AUTO tries backends
_AUTO_ORDER = (Backend.TRITON, Backend.TORCH)

_REGISTRY: dict[Backend, object] = {}


def register_backend(kind: Backend) -> Callable[[type], type]:
    """Class decorator: register one instance of the class as backend ``kind``."""

    def wrap(cls: type) -> type:
        _REGISTRY[kind] = cls()
        return cls

    return wrap


def _load(kind: Backend):
    if kind not in _REGISTRY:
        try:
            importlib.import_module(_MODULES[kind])
        except ImportError as exc:
            raise BackendUnavailable(
                f"backend '{kind.value}' is not available here: {exc}"
            ) from None
        if kind not in _REGISTRY:
            raise BackendUnavailable(f"backend '{kind.value}' is not implemented in this version")
    return _REGISTRY[kind]


def _gpu_auto(device: torch.device):
    """On CUDA, AUTO is a per-layer dispatcher over the exact GPU backends (``triton`` LUT
    kernels, ``decomposed`` tensor-core factorisation) driven by a cost model; None where
    Triton cannot run (then the order below applies)."""
    try:
        from .decomposed import gpu_auto_backend
    except ImportError:
        return None
    return gpu_auto_backend(device)


def get_backend(kind: "Backend | str", device: torch.device | str = "cpu"):
    """The backend object for ``kind`` on ``device`` (AUTO resolves to the fastest)."""
    kind = Backend.parse(kind)
    device = torch.device(device)
    if kind is Backend.AUTO:
        if device.type == "cuda":
            impl = _gpu_auto(device)
            if impl is not None:
                return impl
        for cand in _AUTO_ORDER:
            try:
                impl = _load(cand)
            except BackendUnavailable:
                continue
            if impl.supports(device) is None:
                return impl
        raise BackendUnavailable(f"no backend supports device {device}")
    impl = _load(kind)
    reason = impl.supports(device)
    if reason is not None:
        raise BackendUnavailable(f"backend '{kind.value}' cannot run on {device}: {reason}")
    return impl
