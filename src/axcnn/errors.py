"""The exceptions axcnn raises.

Every error says what was wrong, what was expected and what to do about it. The CLI maps
them to exit codes (see ``exit_code``): 2 for usage or bad input, 3 for a missing tool or
backend, 1 for anything else.
"""

from __future__ import annotations


class AxcnnError(Exception):
    """Base class of every error axcnn raises on purpose."""

    exit_code = 1


class ConfigError(AxcnnError):
    """A bad option, flag combination, configuration file or missing prerequisite run."""

    exit_code = 2


class LUTError(AxcnnError):
    """A lookup table that is malformed, out of range or inconsistent with its bit widths."""

    exit_code = 2


class DataError(AxcnnError):
    """A dataset that is missing, incomplete or corrupt, or a corrupt checkpoint."""

    exit_code = 2


class BackendUnavailable(AxcnnError):
    """An explicitly requested compute backend cannot run here (no CUDA, no Triton, ...)."""

    exit_code = 3


class ToolNotFound(AxcnnError):
    """An external tool (yosys, sta, iverilog, SubXPAT) is not installed or not found."""

    exit_code = 3


class ToolError(AxcnnError):
    """An external tool ran and failed; the message carries argv, cwd and the stderr tail."""

    exit_code = 1


def exit_code(exc: BaseException) -> int:
    """The CLI exit code for an exception (1 for anything that is not an AxcnnError)."""
    return exc.exit_code if isinstance(exc, AxcnnError) else 1
