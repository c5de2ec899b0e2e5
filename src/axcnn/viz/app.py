"""The Dash explorer of t-SNE analyses, operand heat maps and LUT error maps.

``create_app(runs_dir)`` builds the app; ``axcnn serve`` runs it on 127.0.0.1 by default.
Everything it reads is inside the runs directory it was started on: every path that comes from
the browser (typed, or sent as a dropdown value) goes through :func:`safe_path`, which resolves
symbolic links and refuses anything outside that directory.

What it offers (SEED_SPEC 5.3, kept and extended):

- choose an analysis (listed, or typed as a path inside the runs directory) and see its
  metadata;
- two stages side by side (2-D or 3-D), train points grey, test points by class, misclassified
  ones marked; a box/lasso selection or a click in one view highlights the same samples in the
  other;
- click any test point: its image, label and prediction at every stage;
- filter by class and by flip type between the two shown stages;
- a panel with the per-layer operand heat maps of the model's statistics runs and the error
  maps of the analysis' LUTs, overlaid on where the operands fall, with the weighted error.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..analysis.artifacts import FORMAT, find_analyses, list_artifacts, load_artifact, test_positions
from ..errors import ConfigError
from .palette import MISCLASSIFIED, RIGHT_TO_WRONG, TRAIN, WRONG_TO_RIGHT, class_colors

log = logging.getLogger("axcnn.viz")

#: above this many points per view the 2-D plots use WebGL (Scattergl) instead of SVG
WEBGL_THRESHOLD = 6000
FLIP_FILTERS = {
    "all": "all test points",
    "right_to_wrong": "right in left, wrong in right",
    "wrong_to_right": "wrong in left, right in right",
    "changed": "prediction changed",
    "wrong_left": "misclassified in left",
    "wrong_right": "misclassified in right",
}


class PathRefused(ConfigError):
    """A path from the browser that is outside the runs directory (or malformed)."""


def safe_path(root: str | os.PathLike, user: str | os.PathLike | None) -> Path:
    """``user`` (relative to ``root`` or absolute) resolved, if it lies inside ``root``.

    Symbolic links are resolved before the check, so a link pointing out of the runs
    directory is refused too.
    """
    if user is None or str(user).strip() == "" or "\x00" in str(user):
        raise PathRefused("empty or malformed path")
    root_r = Path(root).resolve(strict=True)
    p = Path(str(user).strip()).expanduser()
    resolved = (p if p.is_absolute() else root_r / p).resolve(strict=False)
    if resolved != root_r and root_r not in resolved.parents:
        raise PathRefused(f"'{user}' is outside the runs directory; only paths inside {root_r} are read")
    return resolved


# ----------------------------------------------------------------------------- data access
class RunsView:
    """Read-only access to one runs directory, every path checked by :func:`safe_path`."""

    def __init__(self, runs_dir: str | os.PathLike) -> None:
        root = Path(runs_dir)
        if not root.is_dir():
            raise ConfigError(f"runs directory '{root}' does not exist")
        self.root = root.resolve()

    def rel(self, p: Path) -> str:
        """``p`` relative to the runs directory (PathRefused if it resolves outside)."""
        resolved = Path(p).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise PathRefused(f"'{p}' resolves outside the runs directory")
        return str(resolved.relative_to(self.root))

    def _inside(self, paths) -> list[tuple[Path, str]]:
        """(path, relative path) of those ``paths`` that resolve inside the runs directory."""
        out = []
        for p in paths:
            try:
                out.append((p, self.rel(p)))
            except PathRefused:
                log.warning("ignoring %s: it resolves outside the runs directory", p)
        return out

    def path(self, user: str) -> Path:
        return safe_path(self.root, user)

    def analyses(self) -> list[str]:
        return [r for _, r in self._inside(find_analyses(self.root))]

    def analysis_dir(self, user: str) -> Path:
        """The analysis directory a typed path names (the dir itself, a file in it, or a
        model directory, which gives its newest analysis)."""
        p = self.path(user)
        if p.is_file() and p.suffix == ".npz" and p.parent.name == "artifacts":
            p = p.parent.parent
        if p.is_dir() and not (p / "metadata.json").is_file():
            found = sorted((d for d in (self.path(a) for a in self.analyses()) if p in d.parents),
                           key=lambda d: (d / "metadata.json").stat().st_mtime)
            if found:
                p = found[-1]
        meta = p / "metadata.json"
        if not meta.is_file():
            raise ConfigError(f"'{user}' is not a t-SNE analysis (no metadata.json)")
        return p

    def metadata(self, run: str) -> dict:
        p = self.path(run) / "metadata.json"
        return json.loads(p.read_text())

    def artifacts(self, run: str) -> dict[str, str]:
        d = self.path(run)
        return {p.stem: r for p, r in self._inside(list_artifacts(d))}

    def artifact(self, rel: str) -> dict:
        p = self.path(rel)
        return _cached_artifact(str(p), p.stat().st_mtime_ns)

    def luts(self, run: str) -> dict[str, str]:
        """LUT files of an analysis and of the heat-map analyses of its model."""
        d = self.path(run)
        out = {f"{p.stem} (t-SNE run)": r for p, r in self._inside(sorted((d / "luts").glob("*.npz")))}
        for p, r in self._inside(sorted(d.parent.parent.glob("heatmap/*/lut_*.npz"))):
            out.setdefault(p.stem[4:], r)
        return out

    def stats_runs(self, run: str) -> dict[str, str]:
        d = self.path(run)
        return {p.parent.name: r for p, r in self._inside(sorted(d.parent.parent.glob("stats-*/operand_stats.npz")))}


@lru_cache(maxsize=32)
def _cached_artifact(path: str, _mtime: int) -> dict:
    return load_artifact(path)


@lru_cache(maxsize=8)
def _cached_stats(path: str, _mtime: int):
    from ..analysis.heatmaps import load_stats
    return load_stats(path)


@lru_cache(maxsize=16)
def _cached_lut(path: str, _mtime: int):
    from ..lut import load_lut
    return load_lut(path)


def image_png(flat: np.ndarray, shape: tuple[int, int, int], size: int = 160) -> str:
    """A data: URI of one image (uint8 C*H*W flattened), scaled up with nearest neighbours."""
    from PIL import Image

    img = np.asarray(flat, dtype=np.uint8).reshape(shape)
    img = img[0] if shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))
    scale = max(1, size // max(shape[1], shape[2]))
    pil = Image.fromarray(img).resize((shape[2] * scale, shape[1] * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# ----------------------------------------------------------------------------- figures
def flip_mask(kind: str, y: np.ndarray, pl: np.ndarray, pr: np.ndarray) -> np.ndarray:
    """Which test points a flip filter keeps (left stage predictions ``pl``, right ``pr``)."""
    rl, rr = pl == y, pr == y
    return {"all": np.ones(len(y), bool), "right_to_wrong": rl & ~rr, "wrong_to_right": ~rl & rr,
            "changed": pl != pr, "wrong_left": ~rl, "wrong_right": ~rr}.get(kind, np.ones(len(y), bool))


def scatter_figure(art: dict, *, dims: int = 2, keep: np.ndarray | None = None, show_train: bool = True,
                   selected: set[int] | None = None, clicked: int | None = None,
                   ranges: tuple | None = None, uirevision: str = "") -> dict:
    """The plotly figure of one stage; every test marker carries its test position as customdata.

    customdata is given as plain lists: Dash drops numpy (typed-array) customdata from click
    events.
    """
    import plotly.graph_objects as go

    key = f"X_{dims}d"
    if key not in art:
        fig = go.Figure()
        fig.add_annotation(text=f"this analysis has no {dims}-D embedding", showarrow=False)
        return fig
    Y = np.asarray(art[key])
    pos = test_positions(art)
    mask = np.zeros(len(Y), bool)
    mask[pos] = True
    y = np.asarray(art["y_test_sub"])
    pred = np.asarray(art["y_pred_sub"])
    classes = art.get("classes") or [str(c) for c in range(int(y.max()) + 1)]
    colors = class_colors(len(classes))
    idx = np.asarray(art.get("test_indices", np.arange(len(y))))
    keep = np.ones(len(y), bool) if keep is None else keep
    webgl = dims == 2 and len(Y) > WEBGL_THRESHOLD
    Scatter = go.Scatter3d if dims == 3 else (go.Scattergl if webgl else go.Scatter)

    def xyz(P):
        d = {"x": P[:, 0], "y": P[:, 1]}
        if dims == 3:
            d["z"] = P[:, 2]
        return d

    def sel(members: np.ndarray):
        if not selected:
            return {}
        return {"selectedpoints": [i for i, t in enumerate(members) if int(t) in selected],
                "selected": {"marker": {"opacity": 1.0}}, "unselected": {"marker": {"opacity": 0.12}}}

    traces = []
    if show_train and (~mask).any():
        traces.append(Scatter(**xyz(Y[~mask]), mode="markers", name="train", hoverinfo="skip",
                              marker={"size": 3 if dims == 3 else 4, "color": TRAIN, "opacity": 0.35},
                              customdata=[-1] * int((~mask).sum())))
    Yt = Y[pos]
    for c in np.unique(y):
        m = (y == c) & keep
        if not m.any():
            continue
        members = np.flatnonzero(m)
        hover = [f"#{int(idx[i])} true: {classes[int(y[i])]} pred: {classes[int(pred[i])]}" for i in members]
        traces.append(Scatter(**xyz(Yt[m]), mode="markers", name=classes[int(c)], customdata=[int(v) for v in members],
                              hovertext=hover, hoverinfo="text",
                              marker={"size": 4 if dims == 3 else 7, "color": colors[int(c) % len(colors)]},
                              **sel(members)))
    wrong = (pred != y) & keep
    if wrong.any():
        members = np.flatnonzero(wrong)
        hover = [f"#{int(idx[i])} true: {classes[int(y[i])]} pred: {classes[int(pred[i])]}" for i in members]
        traces.append(Scatter(**xyz(Yt[wrong]), mode="markers", name=f"misclassified ({int(wrong.sum())})",
                              customdata=[int(v) for v in members], hovertext=hover, hoverinfo="text",
                              marker={"symbol": "x", "size": 4 if dims == 3 else 9, "color": MISCLASSIFIED},
                              **sel(members)))
    if clicked is not None and 0 <= clicked < len(y):
        traces.append(Scatter(**xyz(Yt[[clicked]]), mode="markers", name="clicked", customdata=[clicked],
                              hoverinfo="skip", showlegend=False,
                              marker={"size": 10 if dims == 3 else 18, "color": "rgba(0,0,0,0)",
                                      "line": {"color": "black", "width": 3}}))
    fig = go.Figure(traces)
    layout = {"template": "plotly_white", "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 520, "clickmode": "event",
              "dragmode": "lasso" if dims == 2 else "orbit", "uirevision": uirevision,
              "title": {"text": f"{art.get('output_tag', '')}: accuracy {100 * float((pred == y).mean()):.2f}%",
                        "font": {"size": 14}},
              "legend": {"itemsizing": "constant", "font": {"size": 10}}}
    if dims == 2:
        layout["xaxis"] = {"showticklabels": False, "zeroline": False, "showgrid": False}
        layout["yaxis"] = {"showticklabels": False, "zeroline": False, "showgrid": False}
        if ranges is not None:
            layout["xaxis"]["range"] = list(ranges[0])
            layout["yaxis"]["range"] = list(ranges[1])
        anns = []
        for c in np.unique(y[keep]):
            med = np.median(Yt[(y == c) & keep], axis=0)
            anns.append({"x": float(med[0]), "y": float(med[1]), "text": f"<b>{classes[int(c)]}</b>",
                         "showarrow": False, "font": {"size": 11}, "bgcolor": "rgba(255,255,255,0.7)"})
        layout["annotations"] = anns
    fig.update_layout(**layout)
    return fig


def shared_ranges(arts: list[dict], pad: float = 0.05):
    Y = np.concatenate([np.asarray(a["X_2d"]) for a in arts if "X_2d" in a])
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((float(lo[0] - pad * span[0]), float(hi[0] + pad * span[0])),
            (float(lo[1] - pad * span[1]), float(hi[1] + pad * span[1])))


def operand_figure(counts: np.ndarray, fmt: dict, title: str):
    import plotly.graph_objects as go

    c = np.asarray(counts, np.float64)
    z = np.where(c > 0, np.log10(np.where(c > 0, c, 1)), np.nan)
    a0 = -(1 << (fmt["a_bits"] - 1)) if fmt.get("signed") else 0
    w0 = -(1 << (fmt["w_bits"] - 1)) if fmt.get("signed") else 0
    fig = go.Figure(go.Heatmap(z=z, x=np.arange(c.shape[1]) + w0, y=np.arange(c.shape[0]) + a0,
                               colorscale="Viridis", colorbar={"title": "log10 count"},
                               hovertemplate="activation %{y}, weight %{x}: 10^%{z:.2f}<extra></extra>"))
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=460,
                      margin={"l": 50, "r": 10, "t": 50, "b": 40},
                      xaxis={"title": "Weights (operand B)"},
                      yaxis={"title": "Activations (operand A)", "autorange": "reversed"})
    return fig


def lut_figure(lut, counts: np.ndarray | None, title: str):
    import plotly.graph_objects as go

    err = np.abs(lut.error().astype(np.float64))
    x = np.arange(err.shape[1]) - lut.w_offset
    y = np.arange(err.shape[0]) - lut.a_offset
    traces = [go.Heatmap(z=err, x=x, y=y, colorscale="Reds", colorbar={"title": "|error|"},
                         hovertemplate="activation %{y}, weight %{x}: |error| %{z}<extra></extra>")]
    if counts is not None:
        unused = np.where(np.asarray(counts) > 0, np.nan, 1.0)
        traces.append(go.Heatmap(z=unused, x=x, y=y, showscale=False, hoverinfo="skip",
                                 colorscale=[[0, "rgba(255,255,255,0.8)"], [1, "rgba(255,255,255,0.8)"]]))
    fig = go.Figure(traces)
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=460,
                      margin={"l": 50, "r": 10, "t": 50, "b": 40},
                      xaxis={"title": "Weights (operand B)"},
                      yaxis={"title": "Activations (operand A)", "autorange": "reversed"})
    return fig


# ----------------------------------------------------------------------------- the app
def create_app(runs_dir: str | os.PathLike, explore: str | os.PathLike | None = None):
    """The Dash app serving ``runs_dir`` (read-only); ``explore``, a design-space exploration
    folder inside ``runs_dir``, adds its Pareto-front page."""
    try:
        import dash
        from dash import Input, Output, State, ctx, dcc, html, no_update
    except ImportError:
        raise ConfigError("the explorer needs Dash: pip install 'axcnn[app]'") from None

    view = RunsView(runs_dir)
    app = dash.Dash(__name__, title="axcnn explorer", serve_locally=True,
                    assets_folder=str(Path(__file__).parent / "_no_assets"))
    box = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "8px", "margin": "6px 0"}
    analyses = view.analyses()
    app.layout = html.Div(style={"fontFamily": "sans-serif", "margin": "10px"}, children=[
        html.H3(f"axcnn explorer: {view.root}", style={"margin": "4px 0"}),
        html.Div(style={**box, "display": "flex", "gap": "8px", "alignItems": "center", "flexWrap": "wrap"}, children=[
            html.Label("analysis"),
            dcc.Dropdown(id="run-select", options=[{"label": a, "value": a} for a in analyses],
                         value=None, placeholder="choose an analysis", style={"minWidth": "420px"}),
            dcc.Input(id="run-path", type="text", placeholder="or a path inside the runs directory",
                      style={"width": "320px"}, debounce=False),
            html.Button("Load", id="load-path", n_clicks=0),
            html.Button("Refresh list", id="refresh", n_clicks=0),
            html.Span(id="status", style={"marginLeft": "10px", "color": "#555"}),
        ]),
        html.Details(id="meta-panel", style=box, children=[
            html.Summary("Run metadata"), html.Pre(id="metadata", style={"maxHeight": "300px", "overflow": "auto"})]),
        html.Div(style={**box, "display": "flex", "gap": "18px", "flexWrap": "wrap", "alignItems": "center"}, children=[
            html.Div(["classes", dcc.Dropdown(id="class-filter", multi=True, placeholder="all classes",
                                              style={"minWidth": "260px"})]),
            html.Div(["flips", dcc.RadioItems(id="flip-filter", value="all", inline=True,
                                              options=[{"label": v, "value": k} for k, v in FLIP_FILTERS.items()])]),
            html.Div(["view", dcc.RadioItems(id="dims", value=2, inline=True,
                                             options=[{"label": "2-D", "value": 2}, {"label": "3-D", "value": 3}])]),
            dcc.Checklist(id="show-train", value=["train"], options=[{"label": "train points", "value": "train"}]),
            html.Button("Clear selection", id="clear-sel", n_clicks=0),
        ]),
        html.Div(style={"display": "flex", "gap": "10px"}, children=[
            html.Div(style={**box, "flex": "1", "minWidth": "0"}, children=[
                html.B("Left view"), dcc.RadioItems(id="left-stage", inline=True),
                dcc.Graph(id="left-graph", config={"displaylogo": False})]),
            html.Div(style={**box, "flex": "1", "minWidth": "0"}, children=[
                html.B("Right view"), dcc.RadioItems(id="right-stage", inline=True),
                dcc.Graph(id="right-graph", config={"displaylogo": False})]),
        ]),
        html.Div(id="preview-panel", style={**box, "display": "flex", "gap": "16px"}, children=[
            html.Img(id="preview-img", style={"imageRendering": "pixelated", "minWidth": "96px"}),
            html.Div(id="preview-text", children="Click a test point to see its image and predictions."),
        ]),
        html.Details(id="heat-panel", style=box, open=False, children=[
            html.Summary("Operand heat maps and LUT error maps"),
            html.Div(style={"display": "flex", "gap": "8px", "flexWrap": "wrap"}, children=[
                dcc.Dropdown(id="stats-select", placeholder="statistics run", style={"minWidth": "220px"}),
                dcc.Dropdown(id="layer-select", placeholder="layer", style={"minWidth": "220px"}),
                dcc.Dropdown(id="lut-select", placeholder="LUT", style={"minWidth": "300px"}),
            ]),
            html.Div(id="lut-metrics", style={"margin": "6px 0"}),
            html.Div(style={"display": "flex", "gap": "10px"}, children=[
                dcc.Graph(id="operand-graph", style={"flex": "1"}),
                dcc.Graph(id="lut-graph", style={"flex": "1"})]),
        ]),
        dcc.Store(id="run-store"), dcc.Store(id="selection", data=[]), dcc.Store(id="clicked"),
    ])
    if explore is not None:
        from ..explore.dash_page import register_pareto_page

        folder = safe_path(view.root, explore)
        app.layout.children.append(html.Details(open=True, style=box, children=[
            html.Summary("Design-space exploration (Pareto fronts)"),
            register_pareto_page(app, folder, prefix="pareto")]))

    @app.callback(Output("run-select", "options"), Input("refresh", "n_clicks"))
    def refresh(_):
        return [{"label": a, "value": a} for a in view.analyses()]

    @app.callback(
        Output("run-store", "data"), Output("status", "children"), Output("metadata", "children"),
        Output("left-stage", "options"), Output("left-stage", "value"),
        Output("right-stage", "options"), Output("right-stage", "value"),
        Output("class-filter", "options"), Output("class-filter", "value"),
        Output("lut-select", "options"), Output("stats-select", "options"),
        Output("selection", "data", allow_duplicate=True), Output("clicked", "data", allow_duplicate=True),
        Input("load-path", "n_clicks"), Input("run-select", "value"), State("run-path", "value"),
        prevent_initial_call=True)
    def load(_n, selected, typed):
        source = typed if ctx.triggered_id == "load-path" else selected
        if not source:
            return (no_update, "nothing to load",) + (no_update,) * 11
        try:
            d = view.analysis_dir(source)
            run = view.rel(d)
            meta = view.metadata(run)
            if meta.get("format") != FORMAT:
                raise ConfigError(f"'{source}' is not a t-SNE analysis")
            arts = view.artifacts(run)
            if not arts:
                raise ConfigError(f"'{source}' has no artefacts")
        except PathRefused as exc:
            log.warning("refused path from the browser: %s", exc)
            return (no_update, f"refused: {exc}",) + (no_update,) * 11
        except (ConfigError, OSError, ValueError) as exc:
            return (no_update, f"error: {exc}",) + (no_update,) * 11
        tags = list(arts)
        first = view.artifact(arts[tags[0]])
        classes = first.get("classes") or []
        opts = [{"label": t, "value": t} for t in tags]
        left = meta.get("reference", tags[0]) if meta.get("reference") in tags else tags[0]
        right = next((t for t in reversed(tags) if t != left), left)
        luts = view.luts(run)
        stats = view.stats_runs(run)
        return ({"run": run, "artifacts": arts}, f"loaded {run} ({len(tags)} stages)",
                json.dumps(meta, indent=2), opts, left, opts, right,
                [{"label": f"{i}: {c}", "value": i} for i, c in enumerate(classes)], [],
                [{"label": k, "value": v} for k, v in luts.items()],
                [{"label": k, "value": v} for k, v in stats.items()], [], None)

    @app.callback(
        Output("left-graph", "figure"), Output("right-graph", "figure"),
        Input("run-store", "data"), Input("left-stage", "value"), Input("right-stage", "value"),
        Input("dims", "value"), Input("class-filter", "value"), Input("flip-filter", "value"),
        Input("show-train", "value"), Input("selection", "data"), Input("clicked", "data"))
    def figures(store, left, right, dims, class_sel, flip, show_train, selection, clicked):
        import plotly.graph_objects as go

        if not store or left is None or right is None:
            empty = go.Figure()
            empty.update_layout(height=520, annotations=[{"text": "load an analysis", "showarrow": False}])
            return empty, empty
        arts = store["artifacts"]
        if left not in arts or right not in arts:
            return no_update, no_update
        a, b = view.artifact(arts[left]), view.artifact(arts[right])
        y = np.asarray(a["y_test_sub"])
        keep = flip_mask(flip, y, np.asarray(a["y_pred_sub"]), np.asarray(b["y_pred_sub"]))
        if class_sel:
            keep &= np.isin(y, class_sel)
        aligned = a.get("align", "independent") != "independent"
        ranges = shared_ranges([a, b]) if aligned and dims == 2 else None
        sel = set(int(v) for v in (selection or []))
        common = {"dims": dims, "keep": keep, "show_train": bool(show_train), "selected": sel,
                  "clicked": clicked, "ranges": ranges}
        return (scatter_figure(a, uirevision=f"{store['run']}:{dims}:{aligned or left}", **common),
                scatter_figure(b, uirevision=f"{store['run']}:{dims}:{aligned or right}", **common))

    def _points(event) -> list[int]:
        return [int(p["customdata"]) for p in (event or {}).get("points", [])
                if p.get("customdata") is not None and int(p["customdata"]) >= 0]

    @app.callback(
        Output("selection", "data"), Output("clicked", "data"),
        Input("left-graph", "selectedData"), Input("right-graph", "selectedData"),
        Input("left-graph", "clickData"), Input("right-graph", "clickData"), Input("clear-sel", "n_clicks"),
        prevent_initial_call=True)
    def select(lsel, rsel, lclick, rclick, _clear):
        if ctx.triggered_id == "clear-sel":
            return [], None
        selection, clicked = no_update, no_update
        for t in ctx.triggered:
            prop_id = t["prop_id"]
            event = {"left-graph.selectedData": lsel, "right-graph.selectedData": rsel,
                     "left-graph.clickData": lclick, "right-graph.clickData": rclick}.get(prop_id)
            if prop_id.endswith("clickData"):
                pts = _points(event)
                if pts:
                    clicked = pts[0]
            elif prop_id.endswith("selectedData"):
                selection = sorted(set(_points(event)))
        return selection, clicked

    @app.callback(Output("preview-img", "src"), Output("preview-text", "children"),
                  Input("clicked", "data"), State("run-store", "data"))
    def preview(pos, store):
        if pos is None or not store:
            return None, "Click a test point to see its image and predictions."
        arts = {t: view.artifact(p) for t, p in store["artifacts"].items()}
        first = next(iter(arts.values()))
        y = np.asarray(first["y_test_sub"])
        if not 0 <= int(pos) < len(y):
            return None, "no such test point"
        pos = int(pos)
        classes = first.get("classes") or [str(c) for c in range(int(y.max()) + 1)]
        idx = int(np.asarray(first.get("test_indices", np.arange(len(y))))[pos])
        label = classes[int(y[pos])]
        rows = []
        for tag, art in arts.items():
            p = int(np.asarray(art["y_pred_sub"])[pos])
            ok = p == int(y[pos])
            rows.append(html.Tr([html.Td(tag), html.Td(classes[p]),
                                 html.Td("right" if ok else "wrong",
                                         style={"color": WRONG_TO_RIGHT if ok else RIGHT_TO_WRONG})]))
        text = [html.Div(f"test image #{idx} (sample {pos})", id="preview-title"),
                html.Div([html.B("label: "), html.Span(label, id="preview-label")]),
                html.Table([html.Tr([html.Th("stage"), html.Th("prediction"), html.Th("")])] + rows,
                           id="preview-table", style={"borderSpacing": "10px 2px"})]
        src = image_png(first["X_test_pixels"][pos], tuple(first["image_shape"])) if "X_test_pixels" in first else None
        return src, text

    @app.callback(Output("layer-select", "options"), Output("layer-select", "value"),
                  Input("stats-select", "value"), State("run-store", "data"))
    def layers(stats_rel, store):
        if not stats_rel:
            return [], None
        try:
            p = view.path(stats_rel)
            st = _cached_stats(str(p), p.stat().st_mtime_ns)
        except (ConfigError, OSError) as exc:
            log.warning("statistics not loaded: %s", exc)
            return [], None
        opts = [{"label": "all layers", "value": "__all__"}] + [{"label": n, "value": n} for n in st.layers]
        return opts, "__all__"

    @app.callback(Output("operand-graph", "figure"), Output("lut-graph", "figure"), Output("lut-metrics", "children"),
                  Input("stats-select", "value"), Input("layer-select", "value"), Input("lut-select", "value"))
    def heat(stats_rel, layer, lut_rel):
        import plotly.graph_objects as go

        from ..analysis.heatmaps import histogram_for_lut
        from ..lut import lut_metrics, weighted_metrics

        empty = go.Figure()
        empty.update_layout(height=300)
        counts, fmt, text = None, None, []
        try:
            if stats_rel and layer:
                p = view.path(stats_rel)
                st = _cached_stats(str(p), p.stat().st_mtime_ns)
                names = st.layers if layer == "__all__" else [layer]
                if any(n not in st.histograms for n in names):
                    raise ConfigError(f"unknown layer {layer}")
                shapes = {st.histograms[n].shape[1:] for n in names}
                if len(shapes) > 1:
                    raise ConfigError("layers have different bit widths; choose one layer")
                counts = sum(st.summed(n) for n in names)
                fmt = st.fmt(names[0])
            lut = None
            if lut_rel:
                lp = view.path(lut_rel)
                lut = _cached_lut(str(lp), lp.stat().st_mtime_ns)
        except PathRefused as exc:
            return empty, empty, f"refused: {exc}"
        except (ConfigError, OSError, ValueError) as exc:
            return empty, empty, f"error: {exc}"
        op_fig = operand_figure(counts, fmt, f"operands: {layer if layer != '__all__' else 'all layers'}") \
            if counts is not None else empty
        if lut is None:
            return op_fig, empty, "choose a LUT to see its error map"
        lut_counts = None
        if counts is not None:
            try:
                lut_counts, rebinned = histogram_for_lut(counts, fmt, lut, str(layer))
                m = weighted_metrics(lut, lut_counts)
                text = (f"{lut.name}: workload-weighted MAE (mean_ae_cnn) {m['mae']:.4g}, "
                        f"uniform MAE {lut_metrics(lut)['mae']:.4g}, bias {m['bias']:.4g}, EP {m['ep']:.1f}%"
                        + (" (statistics rebinned to the LUT's bits)" if rebinned else ""))
            except ConfigError as exc:
                text = f"{lut.name}: {exc}"
        else:
            text = f"{lut.name}: uniform MAE {lut_metrics(lut)['mae']:.4g} (choose statistics to weigh it)"
        return op_fig, lut_figure(lut, lut_counts, f"{lut.name} |error|"
                                  + (" where operands fall" if lut_counts is not None else "")), text

    return app


def make_server(app, host: str = "127.0.0.1", port: int = 0):
    """A werkzeug server for ``app`` (port 0: a free one; see ``server.port``); call
    ``serve_forever()`` (e.g. in a thread) and ``shutdown()``."""
    from werkzeug.serving import make_server as _make

    return _make(host, port, app.server, threaded=True)
