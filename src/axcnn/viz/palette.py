"""Colours shared by the static figures and the Dash explorer (no plotting imports)."""

from __future__ import annotations

import colorsys

MISCLASSIFIED = "#d62728"
RIGHT_TO_WRONG = "#d62728"
WRONG_TO_RIGHT = "#2ca02c"
TRAIN = "#b0b0b0"


def class_colors(n: int) -> list[str]:
    """``n`` evenly spaced hues (HLS, lightness 0.6, saturation 0.65) as hex strings."""
    out = []
    for i in range(max(n, 1)):
        r, g, b = colorsys.hls_to_rgb((i / max(n, 1)) % 1.0, 0.6, 0.65)
        out.append("#{:02x}{:02x}{:02x}".format(int(r * 255), int(g * 255), int(b * 255)))
    return out[:n]
