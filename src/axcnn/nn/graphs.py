"""CUDA graphs: capture a model's eval forward (or its training forward and backward) for one
input shape, replay it.

An approximate layer's eval forward issues a few dozen small kernels; a CUDA graph replays the
whole model's kernels with one launch, so the GPU no longer waits for Python. Capture needs a
forward that never synchronises the host with the GPU, which the eval path of the approximate
layers provides (cached qparams and weight codes, see :mod:`axcnn.nn.layers`) on backends that
do not read values back (every backend but ``reference`` on CUDA: the ``torch`` backend reads a
LUT's range once per LUT tensor, before any capture).

:class:`GraphedModel` wraps a model in eval mode: the first CUDA batch fixes the graphed input
shape (warm-up on a side stream, then capture, as the PyTorch documentation prescribes); later
batches of that shape, dtype and device are copied into the static input and the graph is
replayed; any other input runs the model eagerly. Outputs are copies, never the graph's static
buffers. Before each replay the storage and version counter of the parameters and buffers seen
at capture, the approximate layers' settings and the GPU backends' cache generation are
compared with those at capture; if anything changed the graph is captured again. Writes through
``tensor.data`` bypass version counters, and a parameter or buffer replaced by another tensor
object (or a layer replaced) is not seen: call :meth:`GraphedModel.reset` after either.

Outputs carry no gradients (the forward runs under ``torch.no_grad()``). While operand
statistics are recorded or observers calibrate, the model runs eagerly (those need Python per
forward). The tensors the captured kernels read stay referenced by the wrapper; GPU backends
that cache tensors across calls must keep them alive as long as the weight codes they were
built from (the layers' cached ``qw``), which the wrapper also keeps.

:class:`GraphedTraining` does the same for training steps (forward and backward; the loss and
the optimizer step stay eager), used by ``axcnn.train.train_epoch`` on CUDA.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..ops.backends import cache_generation
from .layers import _version, approx_layers


class GraphCaptureError(RuntimeError):
    """Capturing the forward in a CUDA graph failed (e.g. a backend synchronises the host);
    the model itself still runs eagerly."""


def _stamp(tensors: list[torch.Tensor], layers: list) -> list[tuple]:
    """What a captured forward depends on besides its input: storage and version of every
    parameter and buffer, the settings of every approximate layer, and the backends' cache
    generation (a cache that dropped tensors may have freed memory the graph reads)."""
    return ([(t.data_ptr(), _version(t)) for t in tensors]
            + [(m.mode, m.spec, m.backend, m.grad_rule, m.lut_table is not None and m.lut_table.data_ptr())
               for m in layers]
            + [cache_generation()])


def _needs_eager(layers: list) -> bool:
    """True while operand statistics are recorded or an observer calibrates."""
    return any(m.recorder is not None or m.act_observer.updating for m in layers)


def _needs_eager_training(layers: list) -> bool:
    """True while operand statistics are recorded or an observer calibrates (training mode
    itself updates the observers, on the device)."""
    return any(m.recorder is not None or m.act_observer.calibrating for m in layers)


def _copy_out(out):
    """A copy of a (nested tuple/list/dict of) tensor output, detached from the graph's buffers."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (tuple, list)):
        return type(out)(_copy_out(o) for o in out)
    if isinstance(out, dict):
        return {k: _copy_out(v) for k, v in out.items()}
    return out


class GraphedModel:
    """Inference through a CUDA graph of ``model`` for one input shape (module docstring).

    ``warmup``: eager forwards on a side stream before the capture (they fill the layers' and
    backends' caches and compile kernels, so the captured forward only launches kernels).
    Raises :class:`~axcnn.errors.ConfigError` for a model in training mode or a CPU input, and
    :class:`GraphCaptureError` when the capture fails.
    """

    def __init__(self, model: nn.Module, *, warmup: int = 3) -> None:
        self.model = model
        self.warmup = max(1, int(warmup))
        self.reset()

    def reset(self) -> None:
        """Drop the captured graph (the next matching input captures again)."""
        self._graph = None
        self._static_in: torch.Tensor | None = None
        self._static_out = None
        self._tensors: list[torch.Tensor] = []   # parameters and buffers at capture
        self._layers: list = []                  # approximate layers at capture
        self._stamp: list[tuple] | None = None
        self._keep: list = []  # the layers' eval caches the graph reads (kept alive)

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def _matches(self, x: torch.Tensor) -> bool:
        s = self._static_in
        return (s is not None and x.shape == s.shape and x.dtype == s.dtype
                and x.device == s.device and x.stride() == s.stride())

    def __call__(self, x: torch.Tensor):
        return self.forward(x)

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        if self.model.training:
            raise ConfigError("GraphedModel replays inference forwards only, but the model is in "
                              "training mode (BatchNorm statistics and observers would not "
                              "update); call model.eval() first")
        if not x.is_cuda:
            raise ConfigError(f"GraphedModel needs CUDA inputs (got a {x.device.type} tensor); "
                              "call the model directly on the CPU")
        if self._graph is None:
            if _needs_eager([m for _, m in approx_layers(self.model)]):
                return self.model(x)
            self._capture(x)
        elif _needs_eager(self._layers) or not self._matches(x):
            return self.model(x)
        elif _stamp(self._tensors, self._layers) != self._stamp:
            self._capture(x)
        self._static_in.copy_(x)
        self._graph.replay()
        return _copy_out(self._static_out)

    def _capture(self, x: torch.Tensor) -> None:
        self.reset()
        model = self.model
        static_in = x.detach().clone()
        try:
            with torch.cuda.device(x.device):
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(self.warmup):
                        model(static_in)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = model(static_in)
        except Exception as exc:  # noqa: BLE001 -- any failure means: no graph, run eagerly
            raise GraphCaptureError(f"could not capture the forward in a CUDA graph: "
                                    f"{type(exc).__name__}: {exc}") from exc
        self._graph, self._static_in, self._static_out = graph, static_in, static_out
        self._tensors = list(model.parameters()) + list(model.buffers())
        self._layers = [m for _, m in approx_layers(model)]
        self._stamp = _stamp(self._tensors, self._layers)
        self._keep = [m._eval_state for m in self._layers]


class GraphedTraining:
    """Training forwards and backwards of ``model`` through CUDA graphs, for one batch shape.

    A training step of an approximate model launches one to two thousand small kernels, and the
    host (Python and the launches) takes longer than the GPU needs for them. Here the first
    CUDA batch in training mode captures the forward and the backward of the model in two CUDA
    graphs (:func:`torch.cuda.make_graphed_callables`, which warms up on a side stream); later
    batches of that shape replay them. Parameters stay the model's own tensors (the optimizer
    updates them in place, as every torch optimizer does), so the optimizer step and the loss
    run eagerly as before. The warm-up forwards would move the BatchNorm statistics and the
    activation observers: their buffers are restored after the capture, so a graphed epoch
    computes what an eager one computes. Other batch shapes (the last, smaller batch), eval
    mode, operand recording and observer calibration run the model eagerly.

    Call :meth:`close` when done (``train_epoch`` does): the capture replaces ``model.forward``
    with the graphed one until then. Gradients are the graph's output buffers, so zero them with
    ``optimizer.zero_grad(set_to_none=True)`` before each backward (accumulating gradients over
    several graphed backwards would add a buffer to itself). Before each replay the storage of
    the parameters and buffers, the approximate layers' settings and the backends' cache
    generation are compared with those at capture (values are not: they change every step);
    a change captures again. Raises :class:`GraphCaptureError` from a failed capture (the
    model is left as it was).
    """

    def __init__(self, model: nn.Module, *, warmup: int = 3) -> None:
        self.model = model
        self.warmup = max(1, int(warmup))
        self._static: tuple | None = None
        self._tensors: list[torch.Tensor] = []
        self._layers: list = []
        self._stamp: list | None = None

    @property
    def captured(self) -> bool:
        return self._static is not None

    def _train_stamp(self) -> list:
        return ([t.data_ptr() for t in self._tensors]
                + [(m.mode, m.spec, m.backend, m.grad_rule,
                    m.lut_table is not None and m.lut_table.data_ptr()) for m in self._layers]
                + [cache_generation()])

    def _matches(self, x: torch.Tensor) -> bool:
        return self._static == (x.shape, x.dtype, x.device, x.stride())

    def _eager(self, x: torch.Tensor):
        return type(self.model).forward(self.model, x)

    def __call__(self, x: torch.Tensor):
        model = self.model
        if not (model.training and x.is_cuda and torch.is_grad_enabled()):
            return self._eager(x)
        if self._static is None:
            if _needs_eager_training([m for _, m in approx_layers(model)]):
                return self._eager(x)
            self._capture(x)
        elif _needs_eager_training(self._layers) or not self._matches(x):
            return self._eager(x)
        elif self._train_stamp() != self._stamp:
            self._capture(x)
        return model(x)                       # the graphed forward (backward replays on its own)

    def close(self) -> None:
        """Give ``model`` its own forward back and drop the graphs."""
        self.model.__dict__.pop("forward", None)
        self._static, self._stamp, self._tensors, self._layers = None, None, [], []

    def _capture(self, x: torch.Tensor) -> None:
        self.close()
        model = self.model
        buffers = list(model.buffers())
        saved = [b.detach().clone() for b in buffers]
        try:
            with torch.cuda.device(x.device):
                torch.cuda.make_graphed_callables(model, (x.detach().clone(),),
                                                  num_warmup_iters=self.warmup,
                                                  allow_unused_input=True)
        except Exception as exc:  # noqa: BLE001 -- any failure means: no graph, run eagerly
            self.close()
            raise GraphCaptureError(f"could not capture the training step in CUDA graphs: "
                                    f"{type(exc).__name__}: {exc}") from exc
        finally:
            with torch.no_grad():
                for b, v in zip(buffers, saved):
                    b.copy_(v)
        self._static = (x.shape, x.dtype, x.device, x.stride())
        self._tensors = list(model.parameters()) + buffers
        self._layers = [m for _, m in approx_layers(model)]
        self._stamp = self._train_stamp()


def graphed_forward(model: nn.Module, *, warmup: int = 3) -> GraphedModel:
    """``GraphedModel(model)``: a callable that replays ``model``'s eval forward on CUDA."""
    return GraphedModel(model, warmup=warmup)
