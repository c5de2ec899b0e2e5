"""axcnn.toolchain: finding tools, running them, logs, failures and timeouts."""

from __future__ import annotations

import sys
import time

import pytest

from axcnn import toolchain
from axcnn.errors import ToolError, ToolNotFound, exit_code
from axcnn.toolchain import ToolFailed, ToolSpec, ToolTimeout, find_tool, run_tool


@pytest.fixture
def fake_tool(monkeypatch):
    """A 'tool' that is the running Python interpreter, found through $AXCNN_FAKE."""
    spec = ToolSpec("fake", "AXCNN_FAKE", ("axcnn-no-such-binary-xyz",), "pip install fake",
                    ("--version",), r"Python\s+(\d+\.\d+)")
    monkeypatch.setitem(toolchain.TOOLS, "fake", spec)
    monkeypatch.setenv("AXCNN_FAKE", sys.executable)
    toolchain._version_of.cache_clear()
    return "fake"


def test_env_override_to_missing_path_is_tool_not_found(monkeypatch):
    monkeypatch.setenv("AXCNN_YOSYS", "/nonexistent/dir/yosys")
    with pytest.raises(ToolNotFound) as ei:
        find_tool("yosys")
    msg = str(ei.value)
    assert "AXCNN_YOSYS=/nonexistent/dir/yosys" in msg
    assert "apt-get install -y yosys" in msg
    assert exit_code(ei.value) == 3


def test_missing_on_path_names_install_command(monkeypatch, tmp_path):
    monkeypatch.delenv("AXCNN_STA", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolNotFound) as ei:
        find_tool("sta")
    assert "sudo apt-get install -y opensta" in str(ei.value)
    assert "AXCNN_STA" in str(ei.value)


def test_unknown_tool():
    with pytest.raises(ToolNotFound):
        find_tool("no-such-tool")


def test_run_writes_log_and_commands(fake_tool, tmp_path):
    res = run_tool(fake_tool, ["-c", "import sys; print('out-line'); print('err-line', file=sys.stderr)"],
                   cwd=tmp_path / "step", log_name="hello")
    assert res.returncode == 0
    assert res.stdout.strip() == "out-line"
    assert res.version.count(".") >= 1
    log = (tmp_path / "step" / "hello.log").read_text()
    assert "out-line" in log and "err-line" in log and "returncode: 0" in log
    cmds = (tmp_path / "step" / "commands.sh").read_text()
    assert cmds.startswith("#!/bin/sh") and "fake -c" in cmds


def test_failure_carries_argv_cwd_and_stderr_tail(fake_tool, tmp_path):
    with pytest.raises(ToolFailed) as ei:
        run_tool(fake_tool, ["-c", "import sys; sys.stderr.write('boom: bad input\\n'); sys.exit(4)"],
                 cwd=tmp_path)
    exc = ei.value
    assert isinstance(exc, ToolError) and exit_code(exc) == 1
    assert exc.returncode == 4
    assert exc.argv[0] == sys.executable
    assert exc.cwd == str(tmp_path)
    assert "boom: bad input" in exc.stderr_tail and "boom: bad input" in str(exc)
    assert exc.log_path is not None and exc.log_path.is_file()


def test_no_check_returns_status(fake_tool, tmp_path):
    res = run_tool(fake_tool, ["-c", "raise SystemExit(3)"], cwd=tmp_path, check=False)
    assert res.returncode == 3


def test_timeout_kills_the_process_group(fake_tool, tmp_path):
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)")
    t0 = time.perf_counter()
    with pytest.raises(ToolTimeout) as ei:
        run_tool(fake_tool, ["-c", code], cwd=tmp_path, timeout=0.5)
    assert time.perf_counter() - t0 < 10
    msg = str(ei.value)
    assert "did not finish within 0.5 s" in msg and "--timeout" in msg
    assert exit_code(ei.value) == 1


def test_default_timeout_env(monkeypatch):
    monkeypatch.setenv("AXCNN_TOOL_TIMEOUT", "12.5")
    assert toolchain.default_timeout() == 12.5
    monkeypatch.setenv("AXCNN_TOOL_TIMEOUT", "nonsense")
    assert toolchain.default_timeout() == toolchain.DEFAULT_TIMEOUT_S
    monkeypatch.delenv("AXCNN_TOOL_TIMEOUT")
    assert toolchain.default_timeout() == toolchain.DEFAULT_TIMEOUT_S


def test_check_tools_reports_missing(monkeypatch):
    monkeypatch.setenv("AXCNN_IVERILOG", "/nonexistent/iverilog")
    rows = {r["tool"]: r for r in toolchain.check_tools(["iverilog"])}
    assert rows["iverilog"]["found"] is False
    assert "apt-get install -y iverilog" in rows["iverilog"]["install"]


@pytest.mark.eda
def test_real_tool_versions(yosys):
    assert toolchain.tool_version("yosys")[0].isdigit()
