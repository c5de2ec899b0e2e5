"""Multiplier lookup tables: the ``MultiplierLUT`` type, file formats, metrics, built-ins."""

from .core import MultiplierLUT, code_range, exact_table, index_offset, operand_values, output_range
from .families import BuiltinSpec, builtin, family_grid, list_builtins, parse_builtin
from .gradients import DEFAULT_WINDOW, gradient_fractions, gradient_tables
from .io import load_lut, save_lut
from .metrics import METRIC_KEYS, lut_metrics, rebin_histogram, weighted_mae, weighted_metrics

__all__ = [
    "MultiplierLUT", "code_range", "exact_table", "index_offset", "operand_values", "output_range",
    "BuiltinSpec", "builtin", "family_grid", "list_builtins", "parse_builtin",
    "DEFAULT_WINDOW", "gradient_fractions", "gradient_tables", "load_lut", "save_lut",
    "METRIC_KEYS", "lut_metrics", "rebin_histogram", "weighted_mae", "weighted_metrics",
]
