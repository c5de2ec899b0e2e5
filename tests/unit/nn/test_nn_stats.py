"""Operand statistics: histograms against a brute-force count, totals, saving and loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from axcnn.lut import builtin, weighted_mae
from axcnn.nn import ApproxConv2d, ApproxLinear, ConversionPlan, Mode, convert_, load_operand_stats, record_operands
from axcnn.quant import QuantSpec, calibrate, quantize, weight_qparams


def brute_force_histogram(layer: ApproxConv2d, x: torch.Tensor):
    """Count every multiplication of ``layer`` on ``x`` with plain loops."""
    spec = layer.spec
    s_a, n_a = layer.act_observer.qparams(spec.a_bits, spec.signed)
    s_w, n_w = weight_qparams(layer.weight, spec.w_bits, spec.signed, spec.per_channel)
    qa = quantize(x, s_a, n_a, spec.a_bits, spec.signed).numpy().astype(np.int64)
    qw = quantize(layer.weight.detach(), s_w, n_w, spec.w_bits, spec.signed, channel_dim=0)
    qw = qw.numpy().astype(np.int64)
    a_off = (1 << (spec.a_bits - 1)) if spec.signed else 0
    w_off = (1 << (spec.w_bits - 1)) if spec.signed else 0
    zero_code = -int(n_a.item())
    B, C, H, W = qa.shape
    OC, Cg, kh, kw = qw.shape
    sh, sw = layer.stride
    ph, pw = layer.padding
    dh, dw = layer.dilation
    oh = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    hist = np.zeros((OC, 1 << spec.a_bits, 1 << spec.w_bits), dtype=np.int64)
    pad_taps = 0
    per_group = OC // layer.groups
    for b in range(B):
        for o in range(OC):
            g = o // per_group
            for oy in range(oh):
                for ox in range(ow):
                    for ci in range(Cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                y, xx = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                                if 0 <= y < H and 0 <= xx < W:
                                    a = qa[b, g * Cg + ci, y, xx]
                                else:
                                    a = zero_code
                                    pad_taps += 1
                                hist[o, a + a_off, qw[o, ci, ky, kx] + w_off] += 1
    return hist, pad_taps, zero_code + a_off, (B, oh, ow, OC, Cg, kh, kw)


CONFIGS = [
    dict(groups=1, stride=1, padding=1, dilation=1, bits=4, signed=False, per_channel=False),
    dict(groups=2, stride=1, padding=1, dilation=1, bits=4, signed=True, per_channel=True),
    dict(groups=4, stride=2, padding=2, dilation=2, bits=3, signed=False, per_channel=True),
    dict(groups=1, stride=(1, 2), padding=(0, 1), dilation=1, bits=8, signed=False, per_channel=False),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"g{c['groups']}-{c['bits']}{'s' if c['signed'] else 'u'}")
def test_histogram_equals_brute_force(cfg):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                     groups=cfg["groups"])
    layer = ApproxConv2d.from_module(conv)
    spec = QuantSpec(cfg["bits"], cfg["bits"], cfg["signed"], cfg["per_channel"])
    layer.configure(Mode.QUANTIZED, spec)
    x = torch.rand(2, 4, 5, 5) * 2.0 - 0.6   # real zero is an interior code (unsigned)
    calibrate(layer, [x])
    layer.eval()
    model = nn.Sequential(layer)
    with record_operands(model) as rec:
        model(x)
    got = rec.histograms["0"].numpy()
    expect, pad_taps, zero_idx, dims = brute_force_histogram(layer, x)
    assert got.dtype == np.int64 and got.shape == expect.shape
    assert np.array_equal(got, expect)
    assert got.sum() == np.prod(dims)                 # B*OH*OW*OC*Cg*kh*kw multiplications
    assert pad_taps > 0
    assert got[:, zero_idx, :].sum() >= pad_taps  # padding taps counted at the zero code
    if not cfg["signed"]:
        assert zero_idx != 0
    assert layer.recorder is None  # detached after the block


def test_recording_accumulates_and_covers_linear(tmp_path):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 5))
    convert_(model, ConversionPlan(mode=Mode.APPROXIMATE, lut="builtin:drum3@4u",
                                   spec=QuantSpec(4, 4), include_linear=True))
    xs = [torch.randn(2, 2, 4, 4), torch.randn(3, 2, 4, 4)]
    calibrate(model, xs)
    model.eval()
    path = tmp_path / "stats" / "ops.npz"
    with record_operands(model, path) as rec:
        for x in xs:
            model(x)
    n = 5  # images
    assert rec.histograms["0"].shape == (3, 16, 16)
    assert rec.histograms["0"].sum().item() == n * 16 * 3 * 2 * 9
    assert rec.histograms["3"].shape == (5, 16, 16)
    assert rec.histograms["3"].sum().item() == n * 5 * 48
    total = rec.total()
    assert total.shape == (16, 16) and total.sum() == n * (16 * 3 * 2 * 9 + 5 * 48)
    # saved once, on exit, and loads back
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ops.npz"]
    hists, meta = load_operand_stats(path)
    assert set(hists) == {"0", "3"}
    for k, h in hists.items():
        assert np.array_equal(h, rec.histograms[k].numpy())
    assert meta["format"] == "axcnn-operand-stats/1"
    assert meta["layers"]["0"] == {"a_bits": 4, "w_bits": 4, "signed": False, "type": "ApproxConv2d"}
    assert meta["layers"]["3"]["type"] == "ApproxLinear"
    # a recorded histogram weighs a LUT of the same format
    lut = builtin("drum3", bits=4)
    assert weighted_mae(lut, hists["0"]) >= 0.0


def test_linear_leading_dims_histogram():
    torch.manual_seed(2)
    lin = ApproxLinear.from_module(nn.Linear(3, 2)).configure(Mode.QUANTIZED, QuantSpec(2, 2))
    x = torch.randn(2, 4, 3)
    calibrate(lin, [x])
    lin.eval()
    with record_operands(nn.Sequential(lin)) as rec:
        lin(x)
    h = rec.histograms["0"].numpy()
    assert h.shape == (2, 4, 4) and h.sum() == 8 * 2 * 3
    # brute force
    s_a, n_a = lin.act_observer.qparams(2, False)
    s_w, n_w = weight_qparams(lin.weight, 2, False, False)
    qa = quantize(x, s_a, n_a, 2, False).reshape(-1, 3).long()
    qw = quantize(lin.weight.detach(), s_w, n_w, 2, False).long()
    expect = np.zeros((2, 4, 4), dtype=np.int64)
    for r in range(qa.shape[0]):
        for o in range(2):
            for k in range(3):
                expect[o, qa[r, k], qw[o, k]] += 1
    assert np.array_equal(h, expect)


def test_no_recording_outside_the_block_and_exact_layers_skip():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1))
    convert_(model, ConversionPlan(layer_modes={"1": Mode.EXACT}))
    x = torch.randn(1, 1, 5, 5)
    calibrate(model, [x])
    with record_operands(model) as rec:
        model(x)
    assert set(rec.histograms) == {"0"}   # the exact layer multiplies floats: nothing recorded
    before = rec.histograms["0"].clone()
    model(x)
    assert torch.equal(rec.histograms["0"], before)


def test_total_needs_one_format():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1))
    convert_(model, ConversionPlan(spec=QuantSpec(4, 4)))
    model[1].configure(Mode.QUANTIZED, QuantSpec(8, 8))
    x = torch.randn(1, 1, 5, 5)
    calibrate(model, [x])
    with record_operands(model) as rec:
        model(x)
    with pytest.raises(ValueError):
        rec.total()


def test_histogram_chunks_over_output_channels(monkeypatch):
    """Chunks of output channels (down to one per product) give the same counts, grouped
    convs included."""
    import axcnn.nn.stats as stats
    from axcnn.ops.problem import ConvGeometry

    gen = torch.Generator().manual_seed(5)
    for G, signed in ((1, False), (3, True)):
        qa = torch.randint(0, 16, (2, 6, 5, 5), generator=gen).float() - (8 if signed else 0)
        qw = torch.randint(0, 16, (9, 6 // G, 3, 3), generator=gen).float() - (8 if signed else 0)
        geo = ConvGeometry((1, 1), (1, 1), (1, 1), G)
        whole = stats.operand_histogram(qa, qw, geo, 4, 4, signed, 0.0)
        for elems in (1, 16 * 16 * G * 2):
            monkeypatch.setattr(stats, "CHUNK_ELEMS", elems)
            assert torch.equal(stats.operand_histogram(qa, qw, geo, 4, 4, signed, 0.0), whole)
        assert int(whole.sum()) == 2 * 25 * 9 * (6 // G) * 9



@pytest.mark.parametrize("geom", [((1, 1), (1, 1), (1, 1), 1, (3, 3)), ((2, 1), (1, 2), (1, 1), 2, (2, 3)),
                                  ((1, 2), (0, 1), (2, 2), 4, (3, 3)), ((2, 2), (0, 0), (1, 1), 1, (1, 1))],
                         ids=["3x3", "2x3-s21-p12-g2", "dil2-g4", "1x1-s2"])
def test_tap_histogram_equals_unfolded_count(geom):
    """Position counts reduced by the tap row/column sets count exactly what the unfolded
    taps hold (padding taps as the index of the code of zero)."""
    from axcnn.nn.stats import position_histogram, position_offsets, tap_histogram
    from axcnn.ops.problem import ConvGeometry, IntConvProblem
    from axcnn.ops.torch_backend import unfold_codes

    stride, padding, dilation, G, k = geom
    gen = torch.Generator().manual_seed(3)
    for bits, signed, n_a in ((8, False, -5.0), (4, True, 0.0), (3, False, -2.0)):
        lo = -(1 << (bits - 1)) if signed else 0
        qa = torch.randint(lo, lo + (1 << bits), (2, 4, 7, 6), generator=gen).float()
        qw = torch.zeros(8, 4 // G, *k)
        geo = ConvGeometry(stride, padding, dilation, G)
        a_off = (1 << (bits - 1)) if signed else 0
        a = (unfold_codes(IntConvProblem(qa, qw, n_a, torch.zeros(8), geo)) + a_off).long()
        M, _, K = a.shape
        R = 1 << bits
        tap = torch.arange(G * K).view(1, G, K) * R
        want = torch.bincount((a + tap).reshape(-1), minlength=G * K * R).view(G, K, R)
        counts = torch.zeros(4 * 7 * 6 * R, dtype=torch.int32)
        position_histogram(qa, position_offsets((4, 7, 6), R, a_off, qa.device), counts)
        got = tap_histogram(counts, (4, 7, 6), 2, k[0], k[1], geo, R, int(round(a_off - n_a)))
        assert got.dtype == torch.int64 and torch.equal(got, want), (bits, signed)


def test_recorder_combines_lazily_and_exactly(monkeypatch):
    """Batches under one weight state are summed as position counts and combined once; a new
    weight state, zero point or input size flushes first. Every way gives the per-batch sum."""
    import axcnn.nn.stats as stats

    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(45, 4))
    convert_(model, ConversionPlan(spec=QuantSpec(4, 4), include_linear=True))
    xs = [torch.randn(2, 3, 6, 6) for _ in range(3)]
    calibrate(model, xs)
    model.eval()
    conv = model[0]

    def one(x):
        with record_operands(model) as r:
            model(x)
        return {k: v.clone() for k, v in r.histograms.items()}

    per_batch = [one(x) for x in xs]
    want = {k: sum(h[k] for h in per_batch) for k in per_batch[0]}
    for images, nbytes in ((stats.MAX_PENDING_IMAGES, stats.MAX_POSITION_BYTES), (3, 1 << 30), (1 << 30, 0)):
        monkeypatch.setattr(stats, "MAX_PENDING_IMAGES", images)
        monkeypatch.setattr(stats, "MAX_POSITION_BYTES", nbytes)
        with record_operands(model) as rec:
            for x in xs:
                model(x)
            # nothing combined yet; position counts folded into tap counts on the way when
            # int32 counts could overflow (3 images) or they take too much memory (0 bytes)
            assert set(rec._pending) == {"0", "3"} and not rec._histograms
            folded = rec._pending["0"].taps is not None
            assert folded == (images == 3 or nbytes == 0)
            assert (rec._pending["0"].counts is None) == (nbytes == 0)
        got = rec.histograms
        assert not rec._pending
        assert all(torch.equal(got[k], want[k]) for k in want)
    # new weights mid-recording: the counts before are combined with the old codes
    with record_operands(model) as rec:
        model(xs[0])
        with torch.no_grad():
            conv.weight.mul_(-1.0)
        model(xs[1])
    after = one(xs[1])
    assert torch.equal(rec.histograms["0"], per_batch[0]["0"] + after["0"])
    assert not torch.equal(after["0"], per_batch[1]["0"])   # the weight codes did change


def test_recorder_refuses_a_changed_operand_format():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 2, 3))
    convert_(model, ConversionPlan(spec=QuantSpec(4, 4)))
    x = torch.randn(1, 1, 5, 5)
    calibrate(model, [x])
    model.eval()
    with record_operands(model) as rec:
        model(x)
        model[0].configure(Mode.QUANTIZED, QuantSpec(4, 4, signed=True))
        with pytest.raises(ValueError, match="operand format"):
            calibrate(model, [x])        # its forwards are recorded too
    assert rec.histograms["0"].shape == (2, 16, 16)


@pytest.mark.parametrize("fold", [False, True])
def test_recorder_under_inference_mode(monkeypatch, fold):
    """Batches recorded under torch.inference_mode, and others outside it, are read outside it."""
    import axcnn.nn.stats as stats

    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1))
    convert_(model, ConversionPlan(spec=QuantSpec(4, 4)))
    xs = [torch.randn(2, 2, 6, 6) for _ in range(3)]
    calibrate(model, xs)
    model.eval()
    if fold:
        monkeypatch.setattr(stats, "MAX_POSITION_BYTES", 0)
    with record_operands(model) as want:
        with torch.no_grad():
            for x in xs:
                model(x)
    with record_operands(model) as rec:
        with torch.inference_mode():
            model(xs[0])
        with torch.no_grad():
            model(xs[1])
        with torch.inference_mode():
            model(xs[2])
            rec.histograms          # combined inside inference mode ...
        with torch.no_grad():
            model(xs[0])            # ... and added to outside it
    assert torch.equal(rec.histograms["0"], want.histograms["0"] + one_batch(model, xs[0]))


def one_batch(model, x):
    with torch.no_grad(), record_operands(model) as r:
        model(x)
    return r.histograms["0"]
