"""``axcnn serve``: the Dash explorer of t-SNE analyses, operand heat maps and LUT errors.

It binds 127.0.0.1 (this machine only) unless --host says otherwise, and reads only inside the
runs directory it was started on: paths typed in the browser, or sent by it, that resolve
(symbolic links included) outside that directory are refused.

Make analyses with `axcnn tsne` (and operand statistics with `axcnn train --conv_type 5`),
then open http://127.0.0.1:8050/.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

log = logging.getLogger("axcnn")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="the Dash explorer (t-SNE stages, flips, heat maps, LUT errors)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="the only directory it reads")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--debug", action="store_true", help="Dash debug mode (reloader off)")
    p.add_argument("--explore", type=Path, default=None,
                   help="an exploration folder inside --runs-dir: adds its Pareto-front page")
    p.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    from ..errors import ConfigError
    from ..viz.app import create_app

    if not args.runs_dir.is_dir():
        raise ConfigError(f"runs directory '{args.runs_dir}' does not exist; make analyses with `axcnn tsne` "
                          "or pass --runs-dir DIR")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1..65535, got {args.port}")
    if not _is_loopback(args.host):
        log.warning("binding %s: anyone who can reach this address can browse %s", args.host,
                    args.runs_dir.resolve())
    app = create_app(args.runs_dir, explore=args.explore)
    print(f"axcnn explorer of {args.runs_dir.resolve()} on http://{args.host}:{args.port}/ (Ctrl-C stops)",
          flush=True)
    try:
        app.run(host=args.host, port=args.port, debug=args.debug, use_reloader=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc}); choose another --port") from None
    return 0
