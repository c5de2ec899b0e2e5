"""The Pareto page's data functions and its registration on a Dash app (no browser)."""

from __future__ import annotations

import numpy as np
import pytest

from axcnn.explore.dash_page import (candidate_detail, detail_tables, error_map_figure,
                                     load_points, scatter_figure)
from axcnn.explore.runner import run_exploration
from axcnn.explore.spec import spec_from_dict
from axcnn.explore.store import ResultsStore
from axcnn.lut import builtin


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A LUT-only exploration, then fake accuracy and hardware numbers written in."""
    root = tmp_path_factory.mktemp("dash")
    spec = spec_from_dict({"name": "dash", "bits": 4, "cnn": False, "hardware": False,
                           "sources": [{"type": "builtin", "names": ["exact", "trunc3", "trunc5",
                                                                     "drum3"]}]})
    run_exploration(spec, root / "ex", progress=False)
    st = ResultsStore(root / "ex" / "results.sqlite")
    con = st.conn
    for i, (key,) in enumerate(con.execute("SELECT key FROM results ORDER BY name").fetchall()):
        con.execute("UPDATE results SET accuracy=?, power_w=?, area_um2=?, pda=? WHERE key=?",
                    (90.0 - 5 * i, 1e-3 / (i + 1), 100.0 - 10 * i, 0.1 * (i + 1), key))
    con.commit()
    st.set_meta(baseline_accuracy=91.0)
    st.close()
    return root / "ex"


def test_points_and_scatter(folder):
    points, meta = load_points(folder)
    assert len(points) == 4 and meta["name"] == "dash"
    fig = scatter_figure(points, "power", meta["baseline_accuracy"])
    front = fig["data"][1]
    assert sum(len(t["x"]) for t in fig["data"][:2]) == 4
    assert front["name"].startswith("Pareto front") and front["customdata"]
    assert all(len(k) == 64 for k in front["customdata"])
    assert fig["layout"]["shapes"][0]["y0"] == 91.0
    sel = scatter_figure(points, "area", None, selected=points[0]["key"])
    assert sel["data"][-1]["name"] == "selected"
    assert scatter_figure([], "pda")["data"][0]["x"] == []


def test_detail_of_a_clicked_point(folder):
    points, _ = load_points(folder)
    key = next(p["key"] for p in points if p["name"] == "trunc3_4u")
    d = candidate_detail(folder, key)
    assert np.array_equal(d["table"], builtin("trunc3@4u").table)
    tables = detail_tables(d)
    assert set(tables) == {"CNN", "error (uniform operands)", "workload-weighted error", "hardware"}
    assert dict(tables["error (uniform operands)"])["MAE"] == "4.25"
    assert candidate_detail(folder, "0" * 64) is None
    fig = error_map_figure(d["table"], False, "t")
    z = np.array(fig["data"][0]["z"])
    assert z.shape == (16, 16) and z.max() == 0 and z.min() < 0     # truncation under-estimates


def test_page_registers_on_a_dash_app(folder):
    dash = pytest.importorskip("dash")
    from axcnn.explore.dash_page import register_pareto_page

    app = dash.Dash(__name__)
    layout = register_pareto_page(app, folder, prefix="px")
    app.layout = layout
    ids = {c.id for c in layout.children if getattr(c, "id", None)}
    assert {"px-cost", "px-graph", "px-detail", "px-sel", "px-tick"} <= ids | {"px-cost"}
    assert len(app.callback_map) == 3


def test_explorer_app_shows_the_pareto_page_only_inside_its_runs_dir(folder, tmp_path):
    pytest.importorskip("dash")
    from axcnn.errors import ConfigError
    from axcnn.viz.app import create_app

    app = create_app(folder.parent, explore=folder.name)
    assert any(k.startswith("pareto-") or "pareto-" in k for k in app.callback_map)
    with pytest.raises(ConfigError):
        create_app(tmp_path, explore=folder)  # outside the runs directory: refused
