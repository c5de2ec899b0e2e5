"""`axcnn serve`: loopback by default, clear errors, a real server that answers."""

import argparse
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from axcnn.cli import serve
from axcnn.errors import ConfigError

pytest.importorskip("dash")

LAUNCH = ("import argparse, sys; from axcnn.cli import serve; ap = argparse.ArgumentParser(); "
          "serve.add_parser(ap.add_subparsers()); a = ap.parse_args(sys.argv[1:]); sys.exit(a.func(a))")


def _parse(*argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    serve.add_parser(sub)
    return ap.parse_args(["serve", *argv])


def test_defaults_and_errors(tmp_path):
    args = _parse("--runs-dir", str(tmp_path))
    assert args.host == "127.0.0.1" and args.port == 8050
    with pytest.raises(ConfigError, match="does not exist"):
        serve.run(_parse("--runs-dir", str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="--port"):
        serve.run(_parse("--runs-dir", str(tmp_path), "--port", "70000"))
    assert serve._is_loopback("127.0.0.1") and serve._is_loopback("::1") and serve._is_loopback("localhost")
    assert not serve._is_loopback("0.0.0.0")


def _listening_addresses(port: int) -> set[str]:
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                out.add(addr)
    return out


def test_real_server_binds_loopback_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "serve", "--runs-dir", str(tmp_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert body and "axcnn explorer" in body, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
