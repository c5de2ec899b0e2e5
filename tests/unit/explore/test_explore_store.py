"""The spec, the results store, exports and Pareto fronts."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from axcnn.errors import ConfigError
from axcnn.explore.export import SEED_COLUMNS, export_csv, export_json, export_parquet
from axcnn.explore.pareto import pareto_front, pareto_fronts, plot_fronts
from axcnn.explore.spec import load_spec, settings_digest, spec_from_dict
from axcnn.explore.store import SCHEMA_VERSION, ResultsStore

BASE = {"name": "t", "sources": [{"type": "builtin"}]}


def test_spec_defaults_and_yaml(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nmodel: lenet\nbits: 4\nsources:\n  - {type: folder, path: luts}\n"
                 "cnn: {retrain: ste, epochs: 2}\nhardware: false\nexecutor: {workers: 2}\n")
    s = load_spec(p)
    assert s.model_name == "lenet5" and s.bits == 4 and s.hardware is None
    assert s.cnn.retrain == "ste" and s.cnn.effective_epochs == 2
    assert s.path("luts") == tmp_path / "luts"
    assert s.sources[0].options["path"] == "luts"
    assert s.executor.workers == 2 and s.executor.kind == "local"
    again = spec_from_dict(json.loads(json.dumps(s.to_dict())), base_dir=s.base_dir)
    assert again == s


@pytest.mark.parametrize("bad, msg", [
    ({"sources": []}, "sources"),
    ({"bits": 9}, "bits"),
    ({"colour": 1}, "unknown key"),
    ({"sources": [{"type": "nope"}]}, "type"),
    ({"sources": [{"type": "folder"}]}, "needs 'path'"),
    ({"sources": [{"type": "builtin", "famlies": ["x"]}]}, "unknown key"),
    ({"cnn": {"retrain": "always"}}, "retrain"),
    ({"hardware": {"power": "peak"}}, "power"),
    ({"executor": {"kind": "slurm"}}, "executor"),
    ({"name": "a b"}, "name"),
])
def test_spec_errors_name_the_key(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        spec_from_dict({**BASE, **bad})


def test_settings_digest_is_stable_and_sensitive():
    a = settings_digest({"bits": 8, "hw": {"clock": 10}}, {"model": "lenet5"})
    assert a == settings_digest({"hw": {"clock": 10}, "bits": 8}, {"model": "lenet5"})
    assert a != settings_digest({"bits": 8, "hw": {"clock": 5}}, {"model": "lenet5"})
    assert a != settings_digest({"bits": 8, "hw": {"clock": 10}}, None)


def _row(key, status="ok", **kw):
    return {"key": key, "candidate_key": f"lut:{key}", "settings_hash": "s", "name": f"n{key}",
            "source": "builtin", "kind": "lut", "status": status, **kw}


def test_store_never_duplicates_and_never_replaces_ok(tmp_path):
    st = ResultsStore(tmp_path / "r.sqlite")
    assert st.write(_row("a", accuracy=90.0))
    assert not st.write(_row("a", accuracy=10.0))          # ok rows are final
    assert st.row("a")["accuracy"] == 90.0
    assert len(st.rows()) == 1
    with pytest.raises(sqlite3.IntegrityError):           # same candidate + settings, new key
        st.write(_row("b") | {"candidate_key": "lut:a"})
    st.close()
    assert sqlite3.connect(tmp_path / "r.sqlite").execute("PRAGMA user_version").fetchone()[0] \
        == SCHEMA_VERSION


def test_store_failures_count_attempts_then_complete(tmp_path):
    st = ResultsStore(tmp_path / "r.sqlite")
    st.write(_row("f", status="failed", error="boom"))
    assert st.status_of("f") == ("failed", 1) and not st.done("f", 2)
    st.write(_row("f", status="partial", mae=1.0))
    assert st.status_of("f") == ("partial", 1)
    st.write(_row("f", status="failed", error="boom again"))
    assert st.status_of("f") == ("failed", 2) and st.done("f", 2)
    st.write(_row("f", status="ok", accuracy=50.0))
    assert st.row("f")["status"] == "ok" and st.row("f")["error"] is None
    st.write(_row("p", status="failed", error="never", attempts=3))   # permanent failure
    assert st.done("p", 3)
    st.write_cnn("sha", "h", {"accuracy": 12.5, "run_dir": "r"})
    st.write_cnn("sha", "h", {"accuracy": 99.0})
    assert st.cnn_result("sha", "h")["accuracy"] == 12.5
    assert st.counts() == {"builtin": {"ok": 1, "failed": 1}}


def test_store_refuses_other_schema_versions(tmp_path):
    p = tmp_path / "r.sqlite"
    ResultsStore(p).close()
    con = sqlite3.connect(p)
    con.execute("PRAGMA user_version=99")
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        ResultsStore(p)
    with pytest.raises(ConfigError, match="no results store"):
        ResultsStore(tmp_path / "missing.sqlite", readonly=True)


def _folder_with_rows(tmp_path):
    st = ResultsStore(tmp_path / "results.sqlite")
    st.set_meta(name="exp", settings_hash="s", baseline_accuracy=91.0)
    st.write(_row("a", accuracy=90.0, area_um2=100.0, power_w=1e-3, delay_ns=2.0, pda=0.2,
                  mae=1.5, w_mae=0.5, wce=4.0))
    st.write(_row("b", accuracy=80.0, area_um2=50.0, power_w=2e-3, delay_ns=1.0, pda=0.1,
                  mae=3.0, w_mae=1.0, wce=9.0))
    st.write(_row("c", status="failed", error="x"))
    st.write(_row("d", accuracy=99.0) | {"settings_hash": "old", "candidate_key": "lut:d"})
    st.close()
    return tmp_path


def test_export_seed_csv_and_parquet(tmp_path):
    folder = _folder_with_rows(tmp_path)
    out = export_csv(folder, tmp_path / "out.csv")
    rows = list(csv.reader(out.open()))
    assert tuple(rows[0]) == SEED_COLUMNS
    assert [r[0] for r in rows[1:]] == ["na_exp", "nb_exp"]    # ok rows of current settings
    a = dict(zip(rows[0], rows[1]))
    assert float(a["area"]) == 100.0 and float(a["mean_ae_cnn"]) == 0.5 and float(a["max_ae"]) == 4.0
    assert float(a["pda"]) == 0.2 and float(a["accuracy"]) == 90.0
    allrows = list(csv.reader(export_csv(folder, tmp_path / "all.csv", status=None,
                                         all_settings=True).open()))
    assert len(allrows) == 5
    data = json.loads(export_json(folder))
    assert data["name"] == "exp" and len(data["rows"]) == 2
    pq = pytest.importorskip("pyarrow.parquet")
    t = pq.read_table(export_parquet(folder, tmp_path / "out.parquet"))
    assert t.num_rows == 2 and "w_mae" in t.column_names and "accuracy" in t.column_names


def test_pareto_front_and_figures(tmp_path):
    pts = [{"name": "a", "x": 1.0, "accuracy": 50.0}, {"name": "b", "x": 2.0, "accuracy": 70.0},
           {"name": "c", "x": 2.5, "accuracy": 60.0}, {"name": "d", "x": 3.0, "accuracy": 90.0},
           {"name": "e", "x": 1.0, "accuracy": 40.0}, {"name": "f", "x": None, "accuracy": 99.0}]
    assert [p["name"] for p in pareto_front(pts, "x")] == ["a", "b", "d"]
    folder = _folder_with_rows(tmp_path)
    from axcnn.explore.export import load_rows

    rows, meta = load_rows(folder)
    fronts = pareto_fronts(rows)
    assert [p["name"] for p in fronts["area"]] == ["nb", "na"]
    assert [p["name"] for p in fronts["power"]] == ["na"]
    paths = plot_fronts(rows, tmp_path / "fig", baseline=meta["baseline_accuracy"])
    assert all(paths[c].stat().st_size > 1000 for c in ("power", "area", "pda"))
    assert json.loads(paths["json"].read_text())["area"][0]["name"] == "nb"
