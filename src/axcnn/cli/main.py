"""Entry point of the ``axcnn`` command.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers its parser(s) and sets ``func`` to a handler
``handler(args) -> int``. Modules import their heavy dependencies inside the handler, so
``axcnn --help`` stays fast.

Exit codes: 0 ok, 2 usage or bad input, 3 missing tool or backend, 1 anything else.
A user mistake prints one line on stderr, never a traceback (``AXCNN_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from .. import __version__
from ..errors import AxcnnError, exit_code
from . import accept_verbosity

#: subcommand modules, in the order ``axcnn --help`` lists them
COMMAND_MODULES = ("lut", "train", "demo", "campaign", "circuit", "explore", "tsne", "heatmap",
                   "serve")

log = logging.getLogger("axcnn")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axcnn",
        description="CNNs on approximate multipliers: LUTs, quantization, training, circuits.",
    )
    parser.add_argument("--version", action="version", version=f"axcnn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    accept_verbosity(sub)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"axcnn.cli.{name}").add_parser(sub)
    return parser


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("axcnn")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except AxcnnError as exc:
        if os.environ.get("AXCNN_DEBUG"):
            raise
        print(f"axcnn: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:  # stdout closed early (e.g. piped into head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("axcnn: interrupted; finished work is saved and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
