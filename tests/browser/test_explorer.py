"""The Dash explorer in headless Chromium: load a run, switch stages, click a point, refused paths."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

SYN = dict(model="lenet5", dataset="synthetic")


@pytest.fixture(scope="module")
def analysed_runs(tmp_path_factory):
    """A tiny real pipeline (exact -> quantized -> approximate) and a t-SNE analysis of it."""
    from axcnn.analysis.embedding import Align, TSNEParams
    from axcnn.analysis.stages import StageQuery
    from axcnn.analysis.tsne import TsneOptions, run_tsne
    from axcnn.config import Retrain, Stage, resolve_config
    from axcnn.train import RunEnv, run_stage

    runs = tmp_path_factory.mktemp("runs")
    env = RunEnv(runs_dir=runs, progress=False)
    common = dict(train_subset=400, test_subset=200, calib_batches=2)
    run_stage(resolve_config("lenet5", "synthetic", Stage.EXACT, optim_overrides={"epochs": 1}, **common), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.QUANTIZED, optim_overrides={"epochs": 0}, **common), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, retrain=Retrain.NONE,
                             lut="builtin:drum3", **common), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.STATS, **common), env)
    q = StageQuery(**SYN, luts=("builtin:drum3",))
    opts = TsneOptions(params=TSNEParams(n_iter=150, early_exaggeration_iter=50, seed=3),
                       max_train=60, max_test=120, save_figures=False, progress=False)
    res = run_tsne(q, opts, env)
    (outside := runs.parent / "outside-secret").mkdir(exist_ok=True)
    (outside / "metadata.json").write_text('{"format": "axcnn-tsne/1", "status": "complete"}')
    (runs / "escape").symlink_to(outside, target_is_directory=True)
    return runs, res[0]["dir"], outside


def _wait(drv, cond, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception as exc:  # element not there yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def _load(drv, path: str):
    from selenium.webdriver.common.by import By

    from selenium.webdriver.common.keys import Keys

    box = drv.find_element(By.ID, "run-path")
    box.send_keys(Keys.CONTROL, "a")  # clear() would bypass React's state
    box.send_keys(Keys.DELETE)
    box.send_keys(path)
    drv.find_element(By.ID, "load-path").click()


def _status(drv):
    from selenium.webdriver.common.by import By
    return drv.find_element(By.ID, "status").text


def test_load_switch_click_preview(browser, serve_app, analysed_runs):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    runs, run_dir, _ = analysed_runs
    url = serve_app(runs)
    drv = browser
    drv.get(url)
    _wait(drv, lambda: drv.find_element(By.ID, "load-path"), what="the page")
    rel = str(__import__("pathlib").Path(run_dir).relative_to(runs))
    _load(drv, rel)
    _wait(drv, lambda: _status(drv).startswith("loaded"), what="the run to load")
    assert "3 stages" in _status(drv)
    # the right view starts on the last (approximate) stage; switch it to quantized
    title = lambda gid: drv.find_element(By.CSS_SELECTOR, f"#{gid} .gtitle").text
    _wait(drv, lambda: title("right-graph").startswith("approximate_drum3"), what="right view")
    assert title("left-graph").startswith("exact")
    drv.find_element(By.CSS_SELECTOR, "#right-stage input[value=quantized]").find_element(
        By.XPATH, "ancestor::label").click()
    _wait(drv, lambda: title("right-graph").startswith("quantized"), what="the stage switch")
    # click a test point (an SVG marker of a class trace) in the left view
    points = _wait(drv, lambda: drv.find_elements(By.CSS_SELECTOR, "#left-graph .scatterlayer .trace:nth-child(2) path.point"),
                   what="points")
    # hover first (plotly computes the clicked point from the hover), then click
    ActionChains(drv).move_to_element(points[0]).pause(0.3).move_by_offset(1, 0).pause(0.3).click().perform()
    _wait(drv, lambda: (drv.find_element(By.ID, "preview-img").get_attribute("src") or "").startswith("data:image/png"),
          what="the preview image")
    text = drv.find_element(By.ID, "preview-text").text
    assert "label:" in text and "test image #" in text
    rows = drv.find_elements(By.CSS_SELECTOR, "#preview-table tr")
    assert len(rows) == 1 + 3  # header + one row per stage
    assert {r.find_elements(By.TAG_NAME, "td")[0].text for r in rows[1:]} == {"exact", "quantized", "approximate_drum3_8u"}
    # the clicked point is ringed in both views (linked)
    _wait(drv, lambda: all(drv.execute_script(
        f"return document.getElementById('{g}').querySelector('.js-plotly-plot').data"
        ".some(t => t.name === 'clicked')") for g in ("left-graph", "right-graph")), what="linked click marker")


def test_paths_outside_runs_dir_are_refused(browser, serve_app, analysed_runs):
    from selenium.webdriver.common.by import By

    runs, _, outside = analysed_runs
    drv = browser
    drv.get(serve_app(runs))
    _wait(drv, lambda: drv.find_element(By.ID, "load-path"), what="the page")
    for bad in ("../", "../outside-secret", str(outside), "/etc", "escape"):
        _load(drv, bad)
        _wait(drv, lambda: f"'{bad}' is outside" in _status(drv), timeout=10,
              what=f"refusal of {bad!r} (status: {_status(drv)!r})")
        assert _status(drv).startswith("refused") and "outside the runs directory" in _status(drv)
        assert drv.find_element(By.ID, "metadata").get_attribute("textContent") == ""
    # and a path inside still loads afterwards
    _load(drv, "lenet5-synthetic")
    _wait(drv, lambda: _status(drv).startswith("loaded"), what="a path inside the runs directory")
