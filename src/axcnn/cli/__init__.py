"""The ``axcnn`` command line: one module per subcommand; handlers only parse, call, report."""

from __future__ import annotations

import argparse


def accept_verbosity(subparsers) -> None:
    """Make every parser added to ``subparsers`` accept ``-v``/``-q`` after its own name too
    (the top-level parser defines them; SUPPRESS keeps its value when they are not given)."""
    add = subparsers.add_parser

    def add_parser(name, **kwargs):
        p = add(name, **kwargs)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug logging")
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="warnings and errors only")
        return p

    subparsers.add_parser = add_parser
