"""CUDA graphs for inference (axcnn.nn.graphs) and their use in evaluate().

The CPU tests check the refusals and evaluate()'s CPU path and fallback; the ``gpu`` tests
check that replayed graphs give the eager forward's output bit for bit.
"""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from axcnn.data import ImageDataset
from axcnn.errors import ConfigError
from axcnn.lut import builtin
from axcnn.models import create_model
from axcnn.nn import ConversionPlan, Mode, convert_
from axcnn.nn import graphs as graphs_mod
from axcnn.nn.graphs import GraphCaptureError, GraphedModel
from axcnn.quant import calibrate
from axcnn.train import loop

HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def dataset(n_test=37, device="cpu", seed=0, size=32) -> ImageDataset:
    """Random uint8 images (small ones keep the CPU tests fast) with random labels."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n_test, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n_test,), generator=g)
    return ImageDataset("tiny", imgs[:8], labels[:8], imgs, labels, [str(i) for i in range(10)],
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).to(device)


def approx_resnet8(backend="auto", device="cpu", data=None, mode=Mode.APPROXIMATE, grad_rule="ste"):
    torch.manual_seed(0)
    model = create_model("resnet8").to(device)
    lut = builtin("drum4") if mode is Mode.APPROXIMATE else None
    convert_(model, ConversionPlan(mode=mode, lut=lut, backend=backend, grad_rule=grad_rule, window=4))
    data = data or dataset(device=device, size=32 if device == "cuda" else 8)
    calibrate(model, [x for x, _ in data.test_batches(16)][:2])
    return model.eval()


def old_evaluate(model, data, batch_size):
    """evaluate() as it was: host-side sums after every batch."""
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for x, y in data.test_batches(batch_size):
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
            total += len(y)
    return {"accuracy": 100.0 * correct / max(total, 1), "loss": loss_sum / max(total, 1)}


# --- CPU -----------------------------------------------------------------------------------------

def test_graphed_model_refuses_training_mode_and_cpu_inputs():
    model = nn.Sequential(nn.Linear(3, 2))
    g = GraphedModel(model)
    with pytest.raises(ConfigError, match="training mode"):
        g(torch.randn(2, 3))
    model.eval()
    with pytest.raises(ConfigError, match="CUDA"):
        g(torch.randn(2, 3))
    assert not g.captured


def test_recording_and_calibration_run_eagerly():
    from axcnn.nn import record_operands
    from axcnn.quant import observing

    from axcnn.nn import approx_layers

    model = approx_resnet8(mode=Mode.QUANTIZED)
    layers = [m for _, m in approx_layers(model)]
    assert not graphs_mod._needs_eager(layers)
    with record_operands(model):
        assert graphs_mod._needs_eager(layers)
    with observing(model):
        assert graphs_mod._needs_eager(layers)
    assert not graphs_mod._needs_eager(layers)


def test_evaluate_on_cpu_is_unchanged(monkeypatch):
    data = dataset(size=8)
    model = approx_resnet8(data=data, mode=Mode.QUANTIZED)   # fast on the CPU
    monkeypatch.setattr(graphs_mod.GraphedModel, "__init__", lambda *a, **k: pytest.fail("no graph on CPU"))
    for bs in (10, 50):
        assert loop.evaluate(model, data, bs) == old_evaluate(model, data, bs)
        assert loop.evaluate(model, data, bs, cuda_graph=False) == old_evaluate(model, data, bs)
    assert not model.training


def test_evaluate_falls_back_to_eager_when_the_capture_fails(monkeypatch, caplog):
    data = dataset(size=8)
    model = approx_resnet8(data=data, mode=Mode.QUANTIZED)
    want = old_evaluate(model, data, 16)

    class Failing:
        def __init__(self, model):
            self.calls = 0

        def __call__(self, x):
            self.calls += 1
            raise GraphCaptureError("could not capture: a backend synchronises")

    monkeypatch.setattr(loop, "_on_cuda", lambda m: True)
    monkeypatch.setattr(graphs_mod, "GraphedModel", Failing)
    with caplog.at_level(logging.INFO, logger="axcnn.train.loop"):
        assert loop.evaluate(model, data, 16) == want
    assert sum("evaluating eagerly" in r.getMessage() for r in caplog.records) == 1


# --- CUDA ----------------------------------------------------------------------------------------

BACKENDS = [
    pytest.param("torch"),
    pytest.param("triton", marks=pytest.mark.skipif(not HAVE_TRITON, reason="no Triton")),
    pytest.param("auto", marks=pytest.mark.skipif(not HAVE_TRITON, reason="no Triton")),
]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_graphed_equals_eager_and_partial_batches_run_eagerly(backend):
    model = approx_resnet8(backend, "cuda")
    g = torch.Generator(device="cuda").manual_seed(1)
    xs = [torch.randn(64, 3, 32, 32, device="cuda", generator=g) for _ in range(3)]
    part = torch.randn(17, 3, 32, 32, device="cuda", generator=g)
    with torch.no_grad():
        eager = [model(x) for x in xs]
        eager_part = model(part)
    graphed = GraphedModel(model)
    replays = []
    with torch.no_grad():
        outs = [graphed(x) for x in xs]                 # the first call captures
        graph = graphed._graph
        assert graph is not None
        orig = graph.replay
        graph.replay = lambda: (replays.append(1), orig())[1]
        outs += [graphed(x) for x in xs]
        assert len(replays) == 3
        y_part = graphed(part)                          # another shape: eager, no replay
        assert len(replays) == 3 and graphed._graph is graph
    for y, want in zip(outs, eager + eager):
        assert torch.equal(y, want)
    assert torch.equal(y_part, eager_part)
    assert outs[0].data_ptr() != outs[3].data_ptr()     # copies, not the static output


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(not HAVE_TRITON, reason="no Triton")
def test_graph_is_recaptured_after_a_weight_change_and_refuses_training():
    model = approx_resnet8("auto", "cuda")
    x = torch.randn(32, 3, 32, 32, device="cuda")
    graphed = GraphedModel(model)
    with torch.no_grad():
        graphed(x)
        first = graphed._graph
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        conv.weight.mul_(1.25)
        y = graphed(x)
        assert graphed._graph is not first
        assert torch.equal(y, model(x))
    model.train()
    with pytest.raises(ConfigError, match="training mode"):
        graphed(x)


@pytest.mark.gpu
@needs_cuda
def test_graphed_exact_model_equals_eager():
    torch.manual_seed(0)
    model = create_model("resnet8").cuda().eval()
    x = torch.randn(64, 3, 32, 32, device="cuda")
    graphed = GraphedModel(model)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(graphed(x), want) and torch.equal(graphed(x), want)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_with_cuda_graph_equals_eager(backend, monkeypatch):
    data = dataset(n_test=600, device="cuda")
    model = approx_resnet8(backend, "cuda", data)
    captured = []
    orig = graphs_mod.GraphedModel._capture

    def spy(self, x):
        orig(self, x)
        captured.append(tuple(x.shape))

    monkeypatch.setattr(graphs_mod.GraphedModel, "_capture", spy)
    with_graph = loop.evaluate(model, data, 256)
    assert captured == [(256, 3, 32, 32)]
    assert with_graph == loop.evaluate(model, data, 256, cuda_graph=False)
    assert with_graph == old_evaluate(model, data, 256)


# --- training steps through CUDA graphs (GraphedTraining, train_epoch) ---------------------------

def train_data(n_train=200, device="cpu", size=32, seed=3) -> ImageDataset:
    from axcnn.data.dataset import Augment

    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n_train, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n_train,), generator=g)
    return ImageDataset("tiny", imgs, labels, imgs[:16], labels[:16], [str(i) for i in range(10)],
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), Augment.CROP_FLIP).to(device)


def _epoch(model, data, cuda_graph, batch=64, epochs=1):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator(device=data.device).manual_seed(0)
    res = [loop.train_epoch(model, data, opt, batch, gen, cuda_graph=cuda_graph) for _ in range(epochs)]
    return res, model.state_dict()


def test_train_epoch_on_cpu_is_unchanged(monkeypatch):
    data = train_data(n_train=40, size=8)
    monkeypatch.setattr(graphs_mod.GraphedTraining, "__init__",
                        lambda *a, **k: pytest.fail("no graph on CPU"))
    runs = []
    for cuda_graph in (True, False):
        model = approx_resnet8(data=data, mode=Mode.QUANTIZED)
        res, state = _epoch(model, data, cuda_graph, batch=16)
        runs.append((res[0]["train_loss"], res[0]["train_accuracy"], state))
    assert runs[0][:2] == runs[1][:2]
    assert all(torch.equal(runs[0][2][k], runs[1][2][k]) for k in runs[0][2])


def test_train_epoch_falls_back_to_eager_when_the_capture_fails(monkeypatch, caplog):
    data = train_data(n_train=40, size=8)
    want = _epoch(approx_resnet8(data=data, mode=Mode.QUANTIZED), data, False, batch=16)

    class Failing:
        def __init__(self, model):
            self.closed = False

        def __call__(self, x):
            raise GraphCaptureError("could not capture: a backend synchronises")

        def close(self):
            self.closed = True

    monkeypatch.setattr(loop, "_on_cuda", lambda m: True)
    monkeypatch.setattr(graphs_mod, "GraphedTraining", Failing)
    model = approx_resnet8(data=data, mode=Mode.QUANTIZED)
    with caplog.at_level(logging.INFO, logger="axcnn.train.loop"):
        got = _epoch(model, data, True, batch=16)
    assert got[0][0]["train_loss"] == want[0][0]["train_loss"]
    assert all(torch.equal(got[1][k], want[1][k]) for k in want[1])
    assert sum("training eagerly" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("rule", ["ste", "error_aware"])
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "torch"] + ["exact"])
def test_graphed_training_equals_eager(backend, rule, monkeypatch):
    """Two epochs (three full batches and a smaller last one each) with and without CUDA graphs
    give the same parameters, BatchNorm statistics and observer ranges, bit for bit."""
    if backend == "exact" and rule == "error_aware":
        pytest.skip("no approximate layers")
    data = train_data(n_train=200, device="cuda")
    captures = []
    orig = graphs_mod.GraphedTraining._capture
    monkeypatch.setattr(graphs_mod.GraphedTraining, "_capture",
                        lambda self, x: (captures.append(x.shape), orig(self, x))[1])
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    try:
        runs = []
        for cuda_graph in (False, True):
            if backend == "exact":
                torch.manual_seed(0)
                model = create_model("resnet8").cuda()
            else:
                model = approx_resnet8(backend, "cuda", dataset(device="cuda"), grad_rule=rule)
            runs.append(_epoch(model, data, cuda_graph, epochs=2))
            assert "forward" not in model.__dict__          # closed after each epoch
    finally:
        torch.backends.cudnn.deterministic = deterministic
    assert captures == [(64, 3, 32, 32)] * 2                # one capture per epoch, full batches only
    (eager_res, eager_state), (graph_res, graph_state) = runs
    assert [r["train_loss"] for r in eager_res] == [r["train_loss"] for r in graph_res]
    for k in eager_state:
        assert torch.equal(eager_state[k], graph_state[k]), k
