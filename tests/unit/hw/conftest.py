"""Fixtures of the hw tests.

Tests that need yosys / OpenSTA / iverilog carry the ``eda`` marker and are skipped, with the
install command as the reason, only when the tool is missing; ``make test`` installs them, so
in CI they run. Tests that need the default liberty skip with the setup command when it is
not installed. With ``AXCNN_REQUIRE_EDA=1`` (CI) a missing tool or liberty fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def missing(reason: str):
    """Skip with ``reason``, or fail when ``AXCNN_REQUIRE_EDA`` is set (CI)."""
    if os.environ.get("AXCNN_REQUIRE_EDA", "").strip() not in ("", "0"):
        pytest.fail(f"AXCNN_REQUIRE_EDA is set but {reason}")
    pytest.skip(reason)


def need_tools(*names: str):
    """Skip (with the install command) unless every tool in ``names`` is found."""
    from axcnn.errors import ToolNotFound
    from axcnn.toolchain import find_tool

    for n in names:
        try:
            find_tool(n)
        except ToolNotFound as exc:
            missing(f"needs {n}: {exc}")


@pytest.fixture
def yosys():
    need_tools("yosys")


@pytest.fixture
def eda_all():
    need_tools("yosys", "sta")


@pytest.fixture
def iverilog():
    need_tools("iverilog", "vvp")


@pytest.fixture(scope="session")
def osu018() -> Path:
    from axcnn.errors import ToolNotFound
    from axcnn.hw.liberty import default_liberty

    try:
        return default_liberty()
    except ToolNotFound as exc:
        missing(f"the default liberty is not installed ({exc})")


@pytest.fixture(scope="session")
def tiny_lib() -> Path:
    return DATA / "tiny.lib"
