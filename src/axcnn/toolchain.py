"""External tools (yosys, OpenSTA, iverilog, ...): finding, versions, running.

Every external program axcnn starts goes through :func:`run_tool`:

- **Finding**: an environment variable (``AXCNN_YOSYS``, ``AXCNN_STA``, ``AXCNN_IVERILOG``,
  ``AXCNN_VVP``, ...) names the binary (a path or a command name); otherwise the tool's
  usual names are looked up on ``PATH``. A missing tool raises :class:`~axcnn.errors.ToolNotFound`
  (CLI exit 3) with the command that installs it.
- **Running**: argv lists only (never a shell), in a given working directory, with a timeout
  (``timeout=`` or ``AXCNN_TOOL_TIMEOUT`` seconds, default 600). The process runs in its own
  process group, which is killed when the timeout expires (:class:`ToolTimeout`).
- **Records**: each run writes ``<name>.log`` (argv, cwd, version, exit status, time, stdout and
  stderr) into its working directory and appends the command to ``commands.sh`` there, so every
  step directory holds what is needed to reproduce it.
- **Failures** raise :class:`ToolFailed` (a :class:`~axcnn.errors.ToolError`, exit 1) carrying
  ``argv``, ``cwd``, ``returncode``, the stderr tail and the log path.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import ToolError, ToolNotFound

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
TIMEOUT_ENV = "AXCNN_TOOL_TIMEOUT"


@dataclass(frozen=True)
class ToolSpec:
    """How to find, version and install one external tool."""

    name: str
    env: str
    binaries: tuple[str, ...]
    install: str
    version_args: tuple[str, ...] = ("--version",)
    version_regex: str = r"(\d+(?:\.\d+)+)"
    min_version: tuple[int, ...] | None = None
    purpose: str = ""


TOOLS: dict[str, ToolSpec] = {
    t.name: t
    for t in (
        ToolSpec("yosys", "AXCNN_YOSYS", ("yosys",), "sudo apt-get install -y yosys",
                 ("-V",), r"Yosys\s+(\d+\.\d+(?:\+\d+)?)", (0, 10),
                 "Verilog elaboration and synthesis"),
        ToolSpec("sta", "AXCNN_STA", ("sta", "opensta"), "sudo apt-get install -y opensta",
                 ("-version",), r"(\d+\.\d+(?:\.\d+)?)", None,
                 "OpenSTA static timing and vectorless power"),
        ToolSpec("iverilog", "AXCNN_IVERILOG", ("iverilog",), "sudo apt-get install -y iverilog",
                 ("-V",), r"version\s+(\d+\.\d+)", None, "Icarus Verilog compiler (cross-checks)"),
        ToolSpec("vvp", "AXCNN_VVP", ("vvp",), "sudo apt-get install -y iverilog",
                 ("-V",), r"version\s+(\d+\.\d+)", None, "Icarus Verilog runtime (cross-checks)"),
        ToolSpec("apt-get", "AXCNN_APT_GET", ("apt-get",),
                 "a Debian/Ubuntu system (apt-get is part of the 'apt' package)",
                 ("--version",), r"apt\s+(\d+\.\d+(?:\.\d+)?)", None,
                 "downloading the default liberty package"),
        ToolSpec("dpkg-deb", "AXCNN_DPKG_DEB", ("dpkg-deb",),
                 "a Debian/Ubuntu system (dpkg-deb is part of the 'dpkg' package)",
                 ("--version",), r"version\s+(\d+\.\d+(?:\.\d+)?)", None,
                 "unpacking the default liberty package"),
    )
}


class ToolFailed(ToolError):
    """An external tool exited with an error (or was killed)."""

    def __init__(self, message: str, *, tool: str, argv: Sequence[str], cwd: str | Path,
                 returncode: int | None, stderr_tail: str = "", log_path: Path | None = None,
                 output: str = ""):
        super().__init__(message)
        self.tool = tool
        self.argv = list(argv)
        self.cwd = str(cwd)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.log_path = log_path
        self.output = output


class ToolTimeout(ToolFailed):
    """An external tool did not finish within its timeout and was killed."""


@dataclass
class ToolResult:
    """What one tool run did."""

    tool: str
    argv: list[str]
    cwd: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    log_path: Path | None = None
    version: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.stdout + ("\n" + self.stderr if self.stderr else "")


def spec(name: str) -> ToolSpec:
    try:
        return TOOLS[name]
    except KeyError:
        raise ToolNotFound(f"unknown tool '{name}'; known tools: {', '.join(TOOLS)}") from None


def find_tool(name: str) -> Path:
    """The executable of tool ``name``: ``$AXCNN_<NAME>`` if set, else the first one on PATH."""
    s = spec(name)
    override = os.environ.get(s.env, "").strip()
    if override:
        found = shutil.which(override)
        if found is None:
            p = Path(override)
            what = "does not exist" if not p.exists() else "is not an executable file"
            raise ToolNotFound(
                f"{s.name} not found: {s.env}={override} {what}; point {s.env} to the {s.name} "
                f"binary or unset it to use PATH (install: {s.install})"
            )
        return Path(found)
    for binary in s.binaries:
        found = shutil.which(binary)
        if found:
            return Path(found)
    raise ToolNotFound(
        f"{s.name} ({s.purpose}) is not installed or not on PATH; install it with "
        f"'{s.install}' or set {s.env} to its path"
    )


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


@functools.lru_cache(maxsize=None)
def _version_of(name: str, path: str) -> str:
    s = spec(name)
    try:
        proc = subprocess.run([path, *s.version_args], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolNotFound(f"{s.name} at {path} cannot be run ({exc}); reinstall it: {s.install}") from None
    text = (proc.stdout or "") + "\n" + (proc.stderr or "")
    m = re.search(s.version_regex, text)
    return m.group(1) if m else (text.strip().splitlines() or ["unknown"])[0][:80]


def tool_version(name: str) -> str:
    """The version string of tool ``name`` (cached per binary); warns below the minimum."""
    path = find_tool(name)
    version = _version_of(name, str(path))
    s = spec(name)
    if s.min_version and _parse_version(version) and _parse_version(version) < s.min_version:
        log.warning("%s %s is older than the tested minimum %s; results may differ",
                    name, version, ".".join(map(str, s.min_version)))
    return version


def tool_versions(names: Sequence[str]) -> dict[str, str]:
    """``{name: version}`` for the tools that are found (missing ones are left out)."""
    out = {}
    for n in names:
        try:
            out[n] = tool_version(n)
        except ToolNotFound:
            pass
    return out


def check_tools(names: Sequence[str] | None = None) -> list[dict]:
    """One row per tool: name, found, path, version, install command or problem."""
    rows = []
    for n in names or list(TOOLS):
        s = spec(n)
        try:
            path = find_tool(n)
            rows.append({"tool": n, "found": True, "path": str(path), "version": tool_version(n),
                         "env": s.env, "purpose": s.purpose})
        except ToolNotFound as exc:
            rows.append({"tool": n, "found": False, "path": None, "version": None,
                         "env": s.env, "purpose": s.purpose, "problem": str(exc),
                         "install": s.install})
    return rows


def default_timeout() -> float:
    """``$AXCNN_TOOL_TIMEOUT`` seconds, else 600."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
            if value > 0:
                return value
        except ValueError:
            pass
        log.warning("ignoring %s=%r (expected a positive number of seconds)", TIMEOUT_ENV, raw)
    return DEFAULT_TIMEOUT_S


def _tail(text: str, lines: int = 12) -> str:
    rows = [r for r in text.strip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


def _write_log(path: Path, result_header: dict, stdout: str, stderr: str) -> None:
    with open(path, "w", encoding="utf-8", errors="replace") as f:
        for k, v in result_header.items():
            f.write(f"# {k}: {v}\n")
        f.write("# ---- stdout ----\n")
        f.write(stdout)
        if stdout and not stdout.endswith("\n"):
            f.write("\n")
        f.write("# ---- stderr ----\n")
        f.write(stderr)


def _append_command(cwd: Path, name: str, argv: Sequence[str]) -> None:
    script = cwd / "commands.sh"
    new = not script.exists()
    with open(script, "a", encoding="utf-8") as f:
        if new:
            f.write("#!/bin/sh\n# Commands axcnn ran in this directory (re-run to reproduce).\n"
                    "set -e\ncd \"$(dirname \"$0\")\"\n")
        f.write(" ".join(shlex.quote(a) for a in [name, *argv[1:]]) + "\n")
    try:
        script.chmod(0o755)
    except OSError:
        pass


def run_tool(name: str, args: Sequence[str | os.PathLike], *, cwd: str | os.PathLike,
             timeout: float | None = None, log_name: str | None = None, check: bool = True,
             stdin_text: str | None = None, env: dict[str, str] | None = None,
             record: bool = True) -> ToolResult:
    """Run tool ``name`` with ``args`` in ``cwd`` and return its :class:`ToolResult`.

    Raises ToolNotFound if the tool is missing, ToolTimeout after ``timeout`` seconds (the
    whole process group is killed) and, with ``check``, ToolFailed on a non-zero exit.
    """
    exe = find_tool(name)
    version = tool_version(name)
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    argv = [str(exe), *[os.fspath(a) for a in args]]
    limit = float(timeout) if timeout is not None else default_timeout()
    log_path = cwd / f"{log_name or name}.log" if record else None
    if record:
        _append_command(cwd, name, argv)
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    log.debug("running %s in %s", " ".join(shlex.quote(a) for a in argv), cwd)
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                                text=True, errors="replace", env=full_env, start_new_session=True)
    except OSError as exc:
        raise ToolNotFound(f"{name} at {exe} cannot be started ({exc}); "
                           f"reinstall it: {spec(name).install}") from None
    timed_out = False
    try:
        stdout, stderr = proc.communicate(input=stdin_text, timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    header = {"tool": name, "version": version, "argv": " ".join(shlex.quote(a) for a in argv),
              "cwd": str(cwd), "returncode": proc.returncode,
              "seconds": f"{seconds:.3f}", "timeout_s": limit, "timed_out": timed_out}
    if log_path is not None:
        _write_log(log_path, header, stdout, stderr)
    cmd = " ".join(shlex.quote(a) for a in [name, *argv[1:]])
    where = f"; log: {log_path}" if log_path else ""
    if timed_out:
        raise ToolTimeout(
            f"{name} did not finish within {limit:g} s and was killed (command: {cmd}; "
            f"in {cwd}){where}; raise the limit with --timeout or {TIMEOUT_ENV}, or check the "
            "input for a design that makes the tool hang",
            tool=name, argv=argv, cwd=cwd, returncode=None, stderr_tail=_tail(stderr),
            log_path=log_path, output=stdout + stderr)
    result = ToolResult(name, argv, cwd, proc.returncode, stdout, stderr, seconds, log_path, version)
    if check and proc.returncode != 0:
        tail = _tail(stderr) or _tail(stdout)
        raise ToolFailed(
            f"{name} failed with exit status {proc.returncode} (command: {cmd}; in {cwd}){where}"
            + (f"; last output: {' | '.join(tail.splitlines()[-5:])}" if tail else ""),
            tool=name, argv=argv, cwd=cwd, returncode=proc.returncode, stderr_tail=tail,
            log_path=log_path, output=stdout + stderr)
    return result
