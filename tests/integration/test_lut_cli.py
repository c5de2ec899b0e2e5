import json

import numpy as np
import pytest

from axcnn.lut import builtin, load_lut
from axcnn.lut.metrics import METRIC_KEYS


def test_metrics_json_has_the_required_keys(cli):
    out = cli("lut", "metrics", "builtin:trunc6@8u", "--json", check=0)
    m = json.loads(out.stdout)
    for k in ("mae", "wce", "mred", "ep", "bias", "mse"):
        assert k in m
    assert m["mae"] == pytest.approx(80.25)
    assert set(METRIC_KEYS) <= set(m)


def test_convert_roundtrip_and_info(tmp_path, cli):
    for ext in ("npy", "npz", "bin"):
        path = tmp_path / f"d.{ext}"
        cli("lut", "convert", "builtin:drum4@8s", path, "--signed", check=0)
        lut = load_lut(path, signed=True)
        assert np.array_equal(lut.table, builtin("drum4", 8, True).table)
    info = json.loads(cli("lut", "info", tmp_path / "d.npz", "--json", check=0).stdout)
    assert info["signed"] is True and info["shape"] == [256, 256]
    assert info["sha256"] == builtin("drum4", 8, True).sha256


def test_metrics_with_histogram(tmp_path, cli):
    h = np.zeros((16, 16), dtype=np.int64)
    h[15, 15] = 10
    np.save(tmp_path / "h.npy", h)
    m = json.loads(cli("lut", "metrics", "builtin:trunc4@4u", "--histogram", tmp_path / "h.npy",
                       "--json", check=0).stdout)
    lut = builtin("trunc4", 4, False)
    assert m["mae_cnn"] == pytest.approx(abs(lut.error()[15, 15]))


def test_plot_writes_png(tmp_path, cli):
    pytest.importorskip("matplotlib")
    out = tmp_path / "e.png"
    cli("lut", "plot", "builtin:mitchell@6u", "--out", out, "--kind", "signed", check=0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000


def test_list_shows_every_family(cli):
    out = cli("lut", "list", "--json", check=0)
    fams = {f["family"] for f in json.loads(out.stdout)}
    assert fams == {"exact", "trunc", "bam", "drum", "mitchell"}
