"""Figures of a campaign table: accuracy of every multiplier before and after retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import atomic_path
from ..train.campaign import RETRAIN_LABELS
from .lut_plots import _pyplot

RULE_COLORS = {"none": "#b0b0b0", "ste": "#1f77b4", "error_aware": "#d62728"}


def plot_campaign(data: dict[str, Any], path: str | Path, title: str, dpi: int = 150) -> Path:
    """Grouped bars: one group per multiplier (sorted by MAE), one bar per retraining rule,
    the quantized references as dashed lines. ``data`` is ``campaign_table``'s JSON."""
    plt = _pyplot()
    rows = sorted(data["multipliers"], key=lambda r: r["mae"])
    rules = [r for r in RULE_COLORS if any(r in row["accuracy"] for row in rows)]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * len(rows) + 2), 4.6))
    width = 0.8 / max(len(rules), 1)
    for i, rule in enumerate(rules):
        label, color = RETRAIN_LABELS[rule], RULE_COLORS[rule]
        xs = [j + (i - (len(rules) - 1) / 2) * width for j in range(len(rows))]
        ys = [row["accuracy"].get(rule) for row in rows]
        ax.bar([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None],
               width, label=label, color=color)
    refs = [r for r in data["references"] if r["accuracy"] is not None and "quantized" in r["model"]]
    for ref in refs:
        ax.axhline(ref["accuracy"], color="black", lw=0.8, ls="--")
    if refs:
        top = max(refs, key=lambda r: r["accuracy"])
        ax.text(len(rows) - 0.5, top["accuracy"] + 0.5, f"{top['model']}: {top['accuracy']:.1f} %",
                ha="right", va="bottom", fontsize=8)
    names = [f"{r['multiplier']}\nMAE {r['mae']:.0f}" + (f", P {r['relative_power']:.2f}"
                                                        if r.get("relative_power") is not None else "")
             for r in rows]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return path
