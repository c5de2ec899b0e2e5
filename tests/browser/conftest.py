"""Headless Chromium (Debian's chromium + chromium-driver) driving the real Dash app."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver",)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1400")


def _first(paths):
    return next((p for p in paths if Path(p).exists()), None)


@pytest.fixture(scope="session")
def browser():
    """A selenium Chrome driver on Debian's chromium; skipped (with the reason) when absent."""
    binary, driver_path = _first(CHROMIUM), _first(DRIVER) or shutil.which("chromedriver")
    if not binary or not driver_path:
        if os.environ.get("AXCNN_REQUIRE_BROWSER", "").strip() not in ("", "0"):
            pytest.fail("AXCNN_REQUIRE_BROWSER is set but chromium/chromedriver are missing")
        pytest.skip("headless browser tests need Debian's 'chromium' and 'chromium-driver' "
                    "(apt-get install chromium chromium-driver; `make test` installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("browser tests need selenium (pip install 'axcnn[app]' or the dev extra)")
    profile = tempfile.mkdtemp(prefix="axcnn-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def serve_app():
    """Start ``create_app(runs_dir)`` on a free 127.0.0.1 port in a thread; returns its URL."""
    servers = []

    def start(runs_dir) -> str:
        from axcnn.viz.app import create_app, make_server

        srv = make_server(create_app(runs_dir), "127.0.0.1", 0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.port}/"

    yield start
    for srv in servers:
        srv.shutdown()
