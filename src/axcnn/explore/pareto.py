"""Pareto fronts of an exploration: CNN accuracy (higher is better) against a hardware cost
(lower is better): power, area, pda, delay or an error metric.

:func:`pareto_front` is the plain non-dominated filter; :func:`pareto_fronts` applies it to
the store's ``ok`` rows for several costs; :func:`plot_fronts` draws one figure per cost
(every point grey, the front in colour with its names) and writes ``pareto.json`` beside.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError

#: cost name -> (store column, axis label)
COSTS = {
    "power": ("power_w", "power (W)"),
    "area": ("area_um2", "area (um^2)"),
    "pda": ("pda", "power x delay x area (W ns um^2)"),
    "delay": ("delay_ns", "delay (ns)"),
    "energy": ("energy_pj", "energy per multiplication (pJ)"),
    "mae": ("mae", "mean absolute error"),
    "w_mae": ("w_mae", "workload-weighted mean absolute error"),
}
DEFAULT_COSTS = ("power", "area", "pda")


def cost_column(cost: str) -> str:
    if cost not in COSTS:
        raise ConfigError(f"unknown Pareto cost '{cost}'; expected one of {', '.join(COSTS)}")
    return COSTS[cost][0]


def pareto_front(points: Sequence[dict], x: str, y: str = "accuracy") -> list[dict]:
    """The points not dominated in (min ``x``, max ``y``), sorted by ``x``.

    A point is dominated if another has x <= its x and y >= its y with one strictly better.
    Points missing either value are left out; of identical (x, y) points the first is kept.
    """
    pts = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    pts.sort(key=lambda p: (p[x], -p[y]))
    front: list[dict] = []
    best_y = float("-inf")
    for p in pts:
        if p[y] > best_y:
            front.append(p)
            best_y = p[y]
    return front


def pareto_fronts(rows: Sequence[dict], costs: Sequence[str] = DEFAULT_COSTS) -> dict[str, list[dict]]:
    return {c: pareto_front(rows, cost_column(c)) for c in costs}


def _summary(p: dict, col: str) -> dict:
    return {"key": p["key"], "name": p["name"], "source": p["source"], "accuracy": p["accuracy"],
            col: p[col], "mae": p.get("mae"), "w_mae": p.get("w_mae")}


def plot_fronts(rows: Sequence[dict], out_dir: str | os.PathLike,
                costs: Sequence[str] = DEFAULT_COSTS, *, title: str = "",
                baseline: float | None = None) -> dict[str, Path]:
    """One PNG per cost (``pareto_<cost>.png``) plus ``pareto.json``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    fronts = pareto_fronts(rows, costs)
    for cost in costs:
        col, label = COSTS[cost]
        pts = [r for r in rows if r.get(col) is not None and r.get("accuracy") is not None]
        front = fronts[cost]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if pts:
            ax.scatter([p[col] for p in pts], [p["accuracy"] for p in pts], s=14, c="0.65",
                       label=f"candidates ({len(pts)})", zorder=2)
        if front:
            xs = [p[col] for p in front]
            ys = [p["accuracy"] for p in front]
            ax.step(xs, ys, where="post", color="tab:red", lw=1.2, zorder=3)
            ax.scatter(xs, ys, s=28, c="tab:red", label=f"Pareto front ({len(front)})", zorder=4)
            for p in front[:25]:
                ax.annotate(p["name"], (p[col], p["accuracy"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        if baseline is not None:
            ax.axhline(baseline, color="tab:blue", ls="--", lw=0.8, label="quantized (exact products)")
        ax.set_xlabel(label)
        ax.set_ylabel("CNN accuracy (%)")
        ax.set_title(f"{title}: accuracy vs {cost}" if title else f"accuracy vs {cost}")
        ax.grid(alpha=0.3)
        if pts:
            ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        p = out / f"pareto_{cost}.png"
        fig.savefig(p, dpi=130)
        plt.close(fig)
        paths[cost] = p
    (out / "pareto.json").write_text(json.dumps(
        {c: [_summary(p, COSTS[c][0]) for p in f] for c, f in fronts.items()}, indent=2) + "\n")
    paths["json"] = out / "pareto.json"
    return paths
