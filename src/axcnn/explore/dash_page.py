"""The Pareto page of the Dash explorer: accuracy against power, area or pda, click a point to
see its LUT error map, workload-weighted error and hardware report.

Self-contained: :func:`register_pareto_page` builds the page for one results store (or
exploration folder) given by the *server* side, registers its callbacks on a given
``dash.Dash`` app and returns the layout, so the app can place it on a route or a tab::

    from axcnn.explore.dash_page import register_pareto_page
    layout = register_pareto_page(app, "runs/explore/lenet-fmnist")

No path is ever read from the browser. The page re-reads the store every ``refresh_s``
seconds, so a running sweep fills in. The data functions (:func:`load_points`,
:func:`scatter_figure`, :func:`candidate_detail`, :func:`error_map_figure`) are plain Python
returning dicts and Plotly figures; they are tested without a browser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .pareto import COSTS, pareto_front
from .store import ResultsStore, store_path

PAGE_COSTS = ("power", "area", "pda", "delay", "energy", "mae", "w_mae")
_POINT_COLUMNS = ("key", "name", "source", "kind", "accuracy", "accuracy_drop", "lut_sha256",
                  "area_um2", "delay_ns", "power_w", "pda", "energy_pj", "mae", "w_mae", "wce",
                  "exact")


def _folder(path: str | os.PathLike) -> Path:
    return store_path(path).parent


def load_points(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """(points, meta): the finished rows of the current settings, with the plotted columns."""
    with ResultsStore(store_path(path), readonly=True) as st:
        meta = st.meta()
        rows = st.rows(status="ok", settings_hash=meta.get("settings_hash"))
    return [{k: r.get(k) for k in _POINT_COLUMNS} for r in rows], meta


def scatter_figure(points: list[dict], cost: str, baseline: float | None = None,
                   selected: str | None = None) -> dict:
    """A Plotly figure (as a dict): every candidate grey, the Pareto front red.

    Each marker's ``customdata`` is the row key (what a click sends back).
    """
    col, label = COSTS[cost]
    pts = [p for p in points if p.get(col) is not None and p.get("accuracy") is not None]
    front = pareto_front(pts, col)
    fkeys = {p["key"] for p in front}
    rest = [p for p in pts if p["key"] not in fkeys]

    def trace(ps, name, color, size, mode="markers"):
        return {"type": "scatter", "mode": mode, "name": name,
                "x": [p[col] for p in ps], "y": [p["accuracy"] for p in ps],
                "customdata": [p["key"] for p in ps],
                "text": [f"{p['name']} ({p['source']})" for p in ps],
                "hovertemplate": "%{text}<br>" + label + " %{x:.4g}<br>accuracy %{y:.2f}%"
                                 "<extra></extra>",
                "marker": {"color": color, "size": size}, "line": {"shape": "hv", "color": color}}

    data = [trace(rest, f"candidates ({len(rest)})", "#9e9e9e", 7),
            trace(front, f"Pareto front ({len(front)})", "#d62728", 10, "lines+markers")]
    if selected:
        sel = [p for p in pts if p["key"] == selected]
        if sel:
            data.append({**trace(sel, "selected", "#1f77b4", 16), "marker": {
                "color": "rgba(0,0,0,0)", "size": 18, "line": {"color": "#1f77b4", "width": 2}}})
    shapes = []
    if baseline is not None and pts:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": baseline,
                       "y1": baseline, "line": {"color": "#1f77b4", "dash": "dash", "width": 1}})
    return {"data": data, "layout": {
        "xaxis": {"title": {"text": label}}, "yaxis": {"title": {"text": "CNN accuracy (%)"}},
        "shapes": shapes, "clickmode": "event", "hovermode": "closest",
        "margin": {"l": 60, "r": 20, "t": 30, "b": 50}, "legend": {"orientation": "h"},
        "uirevision": cost}}


def error_map_figure(table: np.ndarray, signed: bool = False, title: str = "") -> dict:
    """Heat map of the error LUT - exact (rows = activations, columns = weights)."""
    from ..lut import MultiplierLUT

    lut = MultiplierLUT(table, signed=signed, name="map")
    err = lut.error()
    lo_a, _ = lut.a_range
    lo_w, _ = lut.w_range
    m = float(np.abs(err).max()) or 1.0
    return {"data": [{"type": "heatmap", "z": err.tolist(),
                      "x": list(range(lo_w, lo_w + err.shape[1])),
                      "y": list(range(lo_a, lo_a + err.shape[0])),
                      "colorscale": "RdBu", "zmid": 0, "zmin": -m, "zmax": m,
                      "colorbar": {"title": {"text": "error"}},
                      "hovertemplate": "a %{y}, w %{x}: error %{z}<extra></extra>"}],
            "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "weight code"}},
                       "yaxis": {"title": {"text": "activation code"}, "autorange": "reversed"},
                       "margin": {"l": 60, "r": 20, "t": 40, "b": 50}}}


def candidate_detail(path: str | os.PathLike, key: str) -> dict | None:
    """Everything the detail panel shows for one row: the row, the LUT, the hardware report."""
    folder = _folder(path)
    with ResultsStore(store_path(path), readonly=True) as st:
        row = st.row(key)
    if row is None:
        return None
    out: dict[str, Any] = {"row": row, "table": None, "signed": bool(row.get("signed")),
                           "report": None}
    lut_file = folder / "luts" / f"{row.get('lut_sha256')}.npz"
    if row.get("lut_sha256") and lut_file.is_file():
        from ..lut import load_lut

        lut = load_lut(lut_file)
        out["table"] = lut.table
        out["signed"] = lut.signed
    rep = row.get("report")
    if rep and Path(rep).is_file():
        try:
            out["report"] = json.loads(Path(rep).read_text())
        except (OSError, ValueError):
            out["report"] = None
    for k in ("info", "notes"):
        if isinstance(row.get(k), str):
            try:
                row[k] = json.loads(row[k])
            except ValueError:
                pass
    return out


def _fmt(v, spec=".4g", unit="") -> str:
    return "-" if v is None else f"{format(v, spec)}{unit}"


def detail_tables(detail: dict) -> dict[str, list[tuple[str, str]]]:
    """The detail panel's tables as (label, value) pairs: error, weighted error, hardware."""
    r = detail["row"]
    error = [("MAE", _fmt(r.get("mae"))), ("WCE", _fmt(r.get("wce"))),
             ("MRED", _fmt(r.get("mred"))), ("error probability", _fmt(r.get("ep"), ".3g", " %")),
             ("bias", _fmt(r.get("bias"))), ("MSE", _fmt(r.get("mse")))]
    weighted = [("weighted MAE (mean_ae_cnn)", _fmt(r.get("w_mae"))),
                ("weighted WCE (seen pairs)", _fmt(r.get("w_wce"))),
                ("weighted MRED", _fmt(r.get("w_mred"))),
                ("weighted error probability", _fmt(r.get("w_ep"), ".3g", " %")),
                ("weighted bias", _fmt(r.get("w_bias")))]
    hw = [("area", _fmt(r.get("area_um2"), ".1f", " um^2")), ("delay", _fmt(r.get("delay_ns"), ".4g", " ns")),
          ("power", _fmt(r.get("power_w"), ".4g", " W")),
          ("power (workload)", _fmt(r.get("power_workload_w"), ".4g", " W")),
          ("power (vectorless)", _fmt(r.get("power_vectorless_w"), ".4g", " W")),
          ("energy / multiplication", _fmt(r.get("energy_pj"), ".4g", " pJ")),
          ("pda", _fmt(r.get("pda"))), ("cells", _fmt(r.get("cells"), "d"))]
    rep = detail.get("report")
    if rep:
        hw.append(("liberty", str(rep.get("liberty", {}).get("name", "-"))))
        cp = rep.get("critical_path") or {}
        hw.append(("critical path", f"{cp.get('from') or '-'} -> {cp.get('to') or '-'}"))
        hw.append(("mapped netlist equivalent", str(rep.get("mapped_equivalent"))))
    cnn = [("accuracy", _fmt(r.get("accuracy"), ".2f", " %")),
           ("drop vs quantized", _fmt(r.get("accuracy_drop"), ".2f", " pp")),
           ("source", str(r.get("source"))), ("kind", str(r.get("kind"))),
           ("LUT sha256", (r.get("lut_sha256") or "-")[:16])]
    return {"CNN": cnn, "error (uniform operands)": error, "workload-weighted error": weighted,
            "hardware": hw}


def register_pareto_page(app, path: str | os.PathLike, *, prefix: str = "pareto",
                         refresh_s: float = 10.0):
    """Register the page's callbacks on ``app`` and return its layout (a ``html.Div``)."""
    from dash import Input, Output, State, dcc, html

    store = store_path(path)
    ids = {k: f"{prefix}-{k}" for k in ("cost", "graph", "detail", "tick", "summary", "sel")}

    def layout_tables(detail):
        blocks = []
        for title, pairs in detail_tables(detail).items():
            blocks.append(html.Div([
                html.H5(title, style={"margin": "6px 0"}),
                html.Table([html.Tr([html.Td(k, style={"paddingRight": "12px", "color": "#555"}),
                                     html.Td(v)]) for k, v in pairs])],
                style={"display": "inline-block", "verticalAlign": "top", "marginRight": "24px"}))
        return blocks

    layout = html.Div([
        html.H3("Design-space exploration: accuracy vs hardware cost"),
        html.Div([html.Label("cost axis ", htmlFor=ids["cost"]),
                  dcc.Dropdown(id=ids["cost"], options=[{"label": COSTS[c][1], "value": c}
                                                        for c in PAGE_COSTS],
                               value="power", clearable=False, style={"width": "340px"})],
                 style={"display": "flex", "alignItems": "center", "gap": "8px"}),
        html.Div(id=ids["summary"], style={"margin": "6px 0", "color": "#555"}),
        dcc.Graph(id=ids["graph"], style={"height": "460px"}),
        dcc.Store(id=ids["sel"]),
        dcc.Interval(id=ids["tick"], interval=int(refresh_s * 1000)),
        html.Div(id=ids["detail"], children=html.P("Click a point to see its LUT error map, "
                                                   "workload-weighted error and hardware report.")),
    ])

    @app.callback(Output(ids["graph"], "figure"), Output(ids["summary"], "children"),
                  Input(ids["cost"], "value"), Input(ids["tick"], "n_intervals"),
                  Input(ids["sel"], "data"))
    def _figure(cost, _n, selected):
        try:
            points, meta = load_points(store)
        except Exception as exc:  # noqa: BLE001 - shown on the page, the app keeps running
            return {"data": [], "layout": {}}, f"cannot read {store}: {exc}"
        base = meta.get("baseline_accuracy")
        fig = scatter_figure(points, cost, base, selected)
        text = (f"{meta.get('name')}: {len(points)} finished candidates"
                + (f"; quantized baseline {base:.2f}%" if base is not None else ""))
        return fig, text

    @app.callback(Output(ids["sel"], "data"), Input(ids["graph"], "clickData"),
                  State(ids["sel"], "data"))
    def _select(click, current):
        if not click or not click.get("points"):
            return current
        return click["points"][0].get("customdata") or current

    @app.callback(Output(ids["detail"], "children"), Input(ids["sel"], "data"))
    def _detail(key):
        if not key:
            return html.P("Click a point to see its LUT error map, workload-weighted error and "
                          "hardware report.")
        d = candidate_detail(store, key)
        if d is None:
            return html.P(f"candidate {key[:12]} is not in the store")
        r = d["row"]
        parts = [html.H4(f"{r['name']}  ({r['source']})")]
        if d["table"] is not None:
            parts.append(dcc.Graph(figure=error_map_figure(d["table"], d["signed"],
                                                           f"{r['name']}: LUT - exact product"),
                                   style={"height": "420px", "maxWidth": "560px"}))
        parts += layout_tables(d)
        return parts

    return layout
