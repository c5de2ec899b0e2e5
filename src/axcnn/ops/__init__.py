"""Approximate operators behind one dispatcher (see :mod:`axcnn.ops.backends`)."""

from .backends import Backend, get_backend, register_backend
from .functional import (GradRule, LUTTensors, approx_conv2d, approx_linear, approx_matmul,
                         check_lut_matches)
from .problem import ConvGeometry, IntConvProblem

__all__ = [
    "Backend", "get_backend", "register_backend", "GradRule", "LUTTensors", "approx_conv2d",
    "approx_linear", "approx_matmul", "check_lut_matches", "ConvGeometry", "IntConvProblem",
]
