"""The external programs of the explore loop, registered with :mod:`axcnn.toolchain`.

``gcc`` compiles EvoApproxLib's C models; ``subxpat-python`` is the Python interpreter of a
user's SubXPAT checkout (its own virtual environment). Both are run through
:func:`axcnn.toolchain.run_tool` like every other tool (argv lists, timeouts, process groups,
logs and ``commands.sh`` in the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import toolchain
from ..errors import ToolNotFound
from ..toolchain import ToolSpec

GCC = ToolSpec("gcc", "AXCNN_GCC", ("gcc", "cc"), "sudo apt-get install -y gcc",
               ("--version",), r"(\d+\.\d+(?:\.\d+)?)", None,
               "C compiler for EvoApproxLib's C models")

SUBXPAT_PYTHON = "subxpat-python"
SUBXPAT_ENV = "AXCNN_SUBXPAT_PYTHON"


def register_gcc() -> None:
    toolchain.TOOLS.setdefault("gcc", GCC)


def register_subxpat_python(python: str | os.PathLike, checkout: Path) -> str:
    """Register the interpreter of a SubXPAT checkout as tool ``subxpat-python``.

    ``$AXCNN_SUBXPAT_PYTHON`` (if set) wins over ``python`` through the toolchain's usual
    environment override.
    """
    toolchain.TOOLS[SUBXPAT_PYTHON] = ToolSpec(
        SUBXPAT_PYTHON, SUBXPAT_ENV, (str(python),),
        f"create SubXPAT's environment in {checkout}: 'make setup' there (python3 -m venv .venv "
        "&& .venv/bin/pip install -r requirements.txt), or point $AXCNN_SUBXPAT_PYTHON / the "
        "source's 'python:' to an interpreter that has its requirements",
        ("--version",), r"Python\s+(\d+\.\d+(?:\.\d+)?)", None,
        "the Python environment of the SubXPAT checkout")
    return SUBXPAT_PYTHON


def find_gcc() -> Path:
    register_gcc()
    return toolchain.find_tool("gcc")


def have_gcc() -> bool:
    try:
        find_gcc()
        return True
    except ToolNotFound:
        return False
