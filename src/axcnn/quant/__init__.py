"""Quantization: parameters, fake-quant primitives, observers and calibration."""

from .observers import ActivationObserver, calibrate, calibrate_batchnorm, observers, observing
from .qparams import (EPS, QuantSpec, code_bounds, dequantize, qparams_from_range, quantize,
                      weight_qparams, weight_range)

__all__ = [
    "ActivationObserver", "calibrate", "calibrate_batchnorm", "observers", "observing", "EPS", "QuantSpec",
    "code_bounds", "dequantize", "qparams_from_range", "quantize", "weight_qparams", "weight_range",
]
