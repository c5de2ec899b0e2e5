"""Where approximation hurts: features and t-SNE across stages, prediction flips, operand heat maps.

Heavy dependencies (openTSNE, matplotlib) are imported when used, never at import time.
"""

from .artifacts import find_analyses, list_artifacts, load_artifact, read_metadata, save_artifact
from .embedding import Align, TSNEParams, embed_stages
from .features import ALIASES, LayerRef, extract, resolve_layer, sample_indices
from .flips import FLIP_KINDS, flip_kinds, flip_table
from .stages import StageQuery, StageRun, find_stages, load_stage_model

__all__ = [
    "find_analyses", "list_artifacts", "load_artifact", "read_metadata", "save_artifact",
    "Align", "TSNEParams", "embed_stages", "ALIASES", "LayerRef", "extract", "resolve_layer",
    "sample_indices", "FLIP_KINDS", "flip_kinds", "flip_table", "StageQuery", "StageRun",
    "find_stages", "load_stage_model",
]
