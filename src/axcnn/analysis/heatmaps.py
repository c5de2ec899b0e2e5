"""Operand heat maps and workload-weighted LUT errors from recorded operand statistics.

The statistics stage (``axcnn train --conv_type 5``) writes ``operand_stats.npz``: one int64
(out channels, 2^a_bits, 2^w_bits) count array per layer, indexed like the LUT
(row = activation code, column = weight code, signed codes offset by 2^(b-1)). From it:

- per-layer heat maps (summed over channels, or one per channel), log scale, zero cells shown
  as empty rather than raised to the smallest count (the seed's trick hid where nothing falls);
- a LUT's error weighted by where the operands actually fall (the seed's ``mean_ae_cnn``, for
  any bit width: a histogram recorded at more bits than the LUT is rebinned to the LUT's by
  dropping low bits, :func:`axcnn.lut.rebin_histogram`), per layer and over the whole model;
- the LUT's error map with the operand distribution drawn over it.

``run_heatmap`` writes figures, ``heatmap.json``, ``operands.npz`` and per-LUT JSON/CSV into
``<runs>/<model>-<dataset>/heatmap/<stats run>/`` (or ``--out``).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ConfigError, DataError, LUTError
from ..lut import MultiplierLUT, lut_metrics, rebin_histogram, save_lut, weighted_metrics
from .artifacts import write_json
from .features import safe_layer_name

log = logging.getLogger("axcnn.analysis")

FORMAT = "axcnn-heatmap/1"
STATS_FILE = "operand_stats.npz"


@dataclass
class OperandStats:
    """Recorded operand histograms of one model: per layer (OC, 2^a, 2^w) int64 counts."""

    path: Path
    histograms: dict[str, np.ndarray]
    formats: dict[str, dict]

    @property
    def layers(self) -> list[str]:
        return list(self.histograms)

    def fmt(self, layer: str) -> dict:
        h = self.histograms[layer]
        f = dict(self.formats.get(layer, {}))
        f.setdefault("a_bits", int(h.shape[-2]).bit_length() - 1)
        f.setdefault("w_bits", int(h.shape[-1]).bit_length() - 1)
        f.setdefault("signed", False)
        return f

    def summed(self, layer: str) -> np.ndarray:
        return self.histograms[layer].sum(axis=0)


def load_stats(path: str | Path) -> OperandStats:
    """Read ``operand_stats.npz`` (a file, or a run directory holding one)."""
    from ..nn import load_operand_stats

    p = Path(path)
    if p.is_dir():
        p = p / STATS_FILE
    if not p.is_file():
        raise DataError(f"operand statistics '{p}' do not exist; record them with: "
                        "axcnn train --model MODEL --dataset DATASET --conv_type 5 --bits BITS")
    try:
        hists, meta = load_operand_stats(p)
    except (OSError, ValueError) as exc:
        raise DataError(f"'{p}' is not a readable operand-statistics file ({exc})") from None
    if not hists:
        raise DataError(f"'{p}' holds no layer histograms")
    for name, h in hists.items():
        if h.ndim != 3 or h.shape[1] < 2 or h.shape[2] < 2:
            raise DataError(f"'{p}': layer '{name}' has shape {h.shape}; expected (channels, 2^a, 2^w)")
    return OperandStats(p, hists, meta.get("layers", {}))


def find_stats(runs_dir: Path, model: str, dataset: str, bits: int, signed: bool, per_channel: bool) -> Path:
    """The statistics run of a model at ``bits``; a missing one names the command that makes it."""
    label = f"{bits}{'s' if signed else 'u'}" + ("-pc" if per_channel else "")
    path = runs_dir / f"{model}-{dataset}" / f"stats-{label}" / STATS_FILE
    if not path.is_file():
        cmd = (f"axcnn train --model {model} --dataset {dataset} --conv_type 5 --bits {bits}"
               + (" --signed" if signed else "") + (" --per-channel" if per_channel else "")
               + f" --runs-dir {runs_dir}")
        raise ConfigError(f"no operand statistics at '{path}'; record them with: {cmd}")
    return path


def layer_summary(h: np.ndarray, fmt: dict) -> dict:
    """Counts, zero-operand fractions and occupancy of one layer's (OC, A, W) histogram."""
    s = h.sum(axis=0).astype(np.float64)
    total = float(s.sum())
    a0 = (1 << (fmt["a_bits"] - 1)) if fmt["signed"] else 0
    w0 = (1 << (fmt["w_bits"] - 1)) if fmt["signed"] else 0
    a_vals = np.arange(s.shape[0]) - a0
    w_vals = np.arange(s.shape[1]) - w0
    return {"channels": int(h.shape[0]), "shape": list(h.shape), **fmt,
            "multiplications": int(h.sum()),
            "zero_activation_fraction": float(s[a0].sum() / total) if total else 0.0,
            "zero_weight_fraction": float(s[:, w0].sum() / total) if total else 0.0,
            "occupied_fraction": float((s > 0).mean()),
            "mean_activation_code": float((s.sum(axis=1) * a_vals).sum() / total) if total else 0.0,
            "mean_weight_code": float((s.sum(axis=0) * w_vals).sum() / total) if total else 0.0}


def histogram_for_lut(h: np.ndarray, fmt: dict, lut: MultiplierLUT, layer: str = "") -> tuple[np.ndarray, bool]:
    """``h`` (.., 2^a, 2^w) at the LUT's widths (rebinned if recorded at more bits), and whether it was."""
    if bool(fmt.get("signed", False)) != lut.signed:
        raise LUTError(f"layer '{layer}' was recorded with {'signed' if fmt.get('signed') else 'unsigned'} "
                       f"codes but LUT '{lut.name}' is {'signed' if lut.signed else 'unsigned'}")
    A, W = int(h.shape[-2]).bit_length() - 1, int(h.shape[-1]).bit_length() - 1
    if (A, W) == (lut.a_bits, lut.w_bits):
        return h, False
    if A < lut.a_bits or W < lut.w_bits:
        raise LUTError(f"layer '{layer}' was recorded at {A}x{W} bits, fewer than LUT '{lut.name}' "
                       f"({lut.a_bits}x{lut.w_bits}); record the statistics at --bits {lut.a_bits}")
    return rebin_histogram(h, lut.a_bits, lut.w_bits), True


def lut_workload_errors(lut: MultiplierLUT, stats: OperandStats, layers: list[str] | None = None) -> dict:
    """Workload-weighted error metrics of ``lut`` per layer and over all layers."""
    layers = layers or stats.layers
    rows = {}
    total = None
    rebinned = False
    all_mult = sum(int(stats.histograms[name].sum()) for name in layers)
    for name in layers:
        h, rb = histogram_for_lut(stats.summed(name), stats.fmt(name), lut, name)
        rebinned |= rb
        n = int(h.sum())
        if n == 0:
            continue
        rows[name] = {"multiplications": n, "share": n / all_mult if all_mult else 0.0,
                      **weighted_metrics(lut, h)}
        total = h.astype(np.float64) if total is None else total + h
    if total is None:
        raise DataError("the operand statistics hold no multiplications")
    return {"lut": lut.metadata(), "uniform": lut_metrics(lut), "model": weighted_metrics(lut, total),
            "layers": rows, "rebinned": rebinned, "distribution": total}


def _check_layers(stats: OperandStats, layers: list[str] | None) -> list[str]:
    if not layers:
        return stats.layers
    bad = [name for name in layers if name not in stats.histograms]
    if bad:
        raise ConfigError(f"layer(s) {bad} are not in '{stats.path}'; it has: {', '.join(stats.layers)}")
    return list(layers)


def run_heatmap(stats_path: Path, out_dir: Path, *, layers: list[str] | None = None, mode: str = "sum",
                luts: list[MultiplierLUT] = (), overlay: bool = True, max_channels: int = 16,
                dpi: int = 150, progress: bool = True) -> dict:
    """Write the heat maps (and LUT error analyses) of one statistics file; returns the summary."""
    from tqdm import tqdm

    from ..viz import heatmap_plots as hp

    if mode not in ("sum", "channels", "both"):
        raise ConfigError(f"--mode must be sum, channels or both, got '{mode}'")
    stats = load_stats(stats_path)
    layers = _check_layers(stats, layers)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []
    summary = {}
    bar = tqdm(total=len(layers) * (1 + len(luts)), desc="heat maps", leave=False, disable=not progress)
    for name in layers:
        h = stats.histograms[name]
        fmt = stats.fmt(name)
        summary[name] = layer_summary(h, fmt)
        safe = safe_layer_name(name)
        title = f"{name}: {summary[name]['multiplications']:.3g} multiplications"
        if mode in ("sum", "both"):
            figures.append(hp.plot_operand_heatmap(h.sum(axis=0), out_dir / f"operands_{safe}.png", fmt,
                                                   title=title, dpi=dpi))
        if mode in ("channels", "both"):
            figures.append(hp.plot_channel_grid(h, out_dir / f"operands_{safe}_channels.png", fmt,
                                                title=title, max_channels=max_channels, dpi=dpi))
        bar.update(1)
    shapes = {stats.histograms[n].shape[1:] for n in layers}
    fmts = {json.dumps(stats.fmt(n), sort_keys=True) for n in layers}
    total = None
    if len(shapes) == 1 and len(fmts) == 1 and len(layers) > 1:
        total = sum(stats.summed(n) for n in layers)
        figures.append(hp.plot_operand_heatmap(total, out_dir / "operands_all.png", stats.fmt(layers[0]),
                                               title=f"all {len(layers)} layers", dpi=dpi))
    arrays = {safe_layer_name(n): stats.summed(n) for n in layers}
    np.savez_compressed(out_dir / "operands.npz", __meta__=np.array(json.dumps(
        {"layers": {safe_layer_name(n): n for n in layers}, "formats": {n: stats.fmt(n) for n in layers}})),
        **arrays)
    lut_results = []
    csv_rows = []
    for lut in luts:
        res = lut_workload_errors(lut, stats, layers)
        key = f"{safe_layer_name(lut.name)}-{lut.short_hash}"
        dist = res.pop("distribution")
        if overlay:
            figures.append(hp.plot_lut_overlay(lut, dist, out_dir / f"overlay_{key}_all.png",
                                               title=f"{lut.name} on {'all layers' if len(layers) > 1 else layers[0]}",
                                               dpi=dpi))
            for name in layers:
                hl, _ = histogram_for_lut(stats.summed(name), stats.fmt(name), lut, name)
                if hl.sum() > 0 and len(layers) > 1:
                    figures.append(hp.plot_lut_overlay(lut, hl, out_dir / f"overlay_{key}_{safe_layer_name(name)}.png",
                                                       title=f"{lut.name} on {name}", dpi=dpi))
                bar.update(1)
        else:
            bar.update(len(layers))
        save_lut(lut, out_dir / f"lut_{key}.npz")
        write_json(out_dir / f"lut_{key}.json", res)
        lut_results.append({"file": f"lut_{key}.json", "name": lut.name, "sha256": lut.sha256,
                            "mean_ae_cnn": res["model"]["mae"], "mean_ae": res["uniform"]["mae"],
                            "rebinned": res["rebinned"]})
        csv_rows.append([lut.name, lut.short_hash, "(model)", sum(r["multiplications"] for r in res["layers"].values()),
                         1.0, *(res["model"][k] for k in ("mae", "bias", "mse", "mred", "ep", "wce")), res["uniform"]["mae"]])
        for name, r in res["layers"].items():
            csv_rows.append([lut.name, lut.short_hash, name, r["multiplications"], r["share"],
                             *(r[k] for k in ("mae", "bias", "mse", "mred", "ep", "wce")), res["uniform"]["mae"]])
    bar.close()
    if csv_rows:
        with open(out_dir / "lut_errors.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["lut", "sha8", "layer", "multiplications", "share", "mae", "bias", "mse", "mred",
                        "ep", "wce", "uniform_mae"])
            for r in csv_rows:
                w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r])
    result = {"format": FORMAT, "axcnn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "stats": str(stats.path), "mode": mode, "layers": summary,
              "all_layers": bool(total is not None), "luts": lut_results,
              "figures": [str(Path(p).relative_to(out_dir)) for p in figures]}
    write_json(out_dir / "heatmap.json", result)
    return {**result, "dir": str(out_dir)}


def default_out_dir(stats_path: Path) -> Path:
    """``<model>-<dataset>/heatmap/<stats run>`` beside the statistics run."""
    p = stats_path.parent if stats_path.is_file() or stats_path.suffix == ".npz" else stats_path
    return p.parent / "heatmap" / p.name
