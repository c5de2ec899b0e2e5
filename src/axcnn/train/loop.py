"""Training and evaluation loops over whole-tensor datasets, with progress bars."""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..config import OptimConfig
from ..data import ImageDataset

log = logging.getLogger(__name__)


def make_optimizer(model: nn.Module, cfg: OptimConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    elif cfg.schedule == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def _on_cuda(model: nn.Module) -> bool:
    p = next(iter(model.parameters()), None)
    return p is not None and p.is_cuda


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageDataset, batch_size: int = 500, *,
             progress: bool = False, desc: str = "test", cuda_graph: bool = True) -> dict[str, float]:
    """Top-1 accuracy (%) and mean loss on the test split; the model is left in eval mode.

    On CUDA (``cuda_graph``) full batches replay a CUDA graph of the eval forward
    (:class:`axcnn.nn.graphs.GraphedModel`; the last, smaller batch runs eagerly): the same
    kernels, so the same numbers. Where the capture fails (a backend that reads values back
    from the GPU) it logs why and evaluates eagerly. Loss and accuracy are summed on the
    device (float64 / int64, the same sums as on the host) and read once at the end.
    """
    model.eval()
    forward = model
    if cuda_graph and _on_cuda(model):
        from ..nn.graphs import GraphedModel

        forward = GraphedModel(model)
    loss_sum, correct, total = None, None, 0
    n = len(data.test_labels)
    bar = tqdm(total=n, desc=desc, unit="img", leave=False, disable=not progress)
    for x, y in data.test_batches(batch_size):
        logits = _forward_or_eager(forward, model, x)
        if logits is None:              # the capture failed: evaluate eagerly from here on
            forward = model
            logits = model(x)
        loss = F.cross_entropy(logits, y, reduction="sum").double()
        hits = (logits.argmax(dim=1) == y).sum()
        loss_sum = loss if loss_sum is None else loss_sum + loss
        correct = hits if correct is None else correct + hits
        total += len(y)
        bar.update(len(y))
    bar.close()
    loss_total = 0.0 if loss_sum is None else float(loss_sum)
    n_correct = 0 if correct is None else int(correct)
    return {"accuracy": 100.0 * n_correct / max(total, 1), "loss": loss_total / max(total, 1)}


def _forward_or_eager(forward, model: nn.Module, x: torch.Tensor):
    """``forward(x)``; None (after a log line) when ``forward`` is a graph whose capture failed."""
    if forward is model:
        return model(x)
    from ..nn.graphs import GraphCaptureError

    try:
        return forward(x)
    except GraphCaptureError as exc:
        log.info("CUDA graph capture failed, evaluating eagerly: %s", exc)
        return None


@torch.no_grad()
def predict(model: nn.Module, data: ImageDataset, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels of the test split."""
    model.eval()
    return torch.cat([model(x).argmax(dim=1) for x, _ in data.test_batches(batch_size)])


#: steps between progress-bar refreshes; the loss and accuracy stay on the device in between so
#: the host never waits for the GPU inside an epoch (one sync per refresh and one at the end)
BAR_REFRESH_STEPS = 50


def train_epoch(model: nn.Module, data: ImageDataset, optimizer, batch_size: int,
                generator: torch.Generator, *, progress: bool = False, desc: str = "train",
                cuda_graph: bool = True) -> dict[str, float]:
    """One epoch of SGD steps over the shuffled, augmented training split.

    On CUDA (``cuda_graph``) full batches replay the model's forward and backward from CUDA
    graphs (:class:`axcnn.nn.graphs.GraphedTraining`: the same kernels, the BatchNorm and
    observer buffers as in an eager epoch); the loss, the optimizer step and the last, smaller
    batch run eagerly. Where the capture fails it logs why and trains eagerly.
    """
    model.train()
    step = model
    graphed = None
    if cuda_graph and _on_cuda(model):
        from ..nn.graphs import GraphedTraining

        graphed = step = GraphedTraining(model)
    try:
        return _train_steps(model, step, data, optimizer, batch_size, generator, progress, desc)
    finally:
        if graphed is not None:
            graphed.close()


def _forward_train(step, model: nn.Module, x: torch.Tensor):
    """``step(x)``; on a failed capture logs why and returns (model's eager output, model)."""
    if step is model:
        return model(x), step
    from ..nn.graphs import GraphCaptureError

    try:
        return step(x), step
    except GraphCaptureError as exc:
        log.info("CUDA graph capture failed, training eagerly: %s", exc)
        return model(x), model


def _train_steps(model, step, data, optimizer, batch_size, generator, progress, desc):
    n = len(data.train_labels)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.device)
    total = 0
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc=desc, unit="img", leave=False, disable=not progress)
    for i, (x, y) in enumerate(data.train_batches(batch_size, generator=generator), 1):
        logits, step = _forward_train(step, model, x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.detach().argmax(dim=1) == y).sum()
        total += len(y)
        bar.update(len(y))
        if progress and i % BAR_REFRESH_STEPS == 0:
            bar.set_postfix(loss=f"{float(loss_sum) / total:.3f}", acc=f"{100.0 * int(correct) / total:.1f}")
    bar.close()
    loss_total, n_correct = float(loss_sum), int(correct)
    return {"train_loss": loss_total / max(total, 1), "train_accuracy": 100.0 * n_correct / max(total, 1),
            "train_seconds": time.perf_counter() - t0}
