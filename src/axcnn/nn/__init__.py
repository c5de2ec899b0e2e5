"""Approximate layers, modes, operand statistics and model conversion."""

from ..ops import Backend, GradRule
from .convert import ConversionPlan, convert_, set_mode_
from .graphs import GraphCaptureError, GraphedModel, GraphedTraining, graphed_forward
from .layers import APPROX_LAYERS, ApproxConv2d, ApproxLinear, Mode, approx_layers
from .stats import OperandRecorder, load_operand_stats, operand_histogram, record_operands

__all__ = [
    "Backend", "GradRule", "ConversionPlan", "convert_", "set_mode_", "APPROX_LAYERS",
    "ApproxConv2d", "ApproxLinear", "Mode", "approx_layers", "OperandRecorder",
    "load_operand_stats", "operand_histogram", "record_operands", "GraphCaptureError",
    "GraphedModel", "GraphedTraining", "graphed_forward",
]
