"""Features of sampled images: which layer, which images, and one pass per stage.

Layers (``resolve_layer``), as in the seed, with a literal ``named_modules()`` path checked first:

- ``penultimate``: the output of ``model.forward_features`` (the input of the final Linear,
  ``model.fc``): LeNet-5's 84-d post-ReLU vector, a ResNet's pooled features, VGG's/AlexNet's
  last hidden FC output.
- ``logits``: the output of ``model.fc``.
- ``conv1`` / ``conv2``: the output of the first / second ``nn.Conv2d`` (approximate ones too).
- ``block1`` / ``block2``: the module whose last name is ``layer1|block1|pool1`` (resp. 2);
  for models without one, the first / second ``nn.MaxPool2d``.
- ``pixels``: the normalised input image (the seed's ``--tsne_feature_space pixels``).
- any other ``named_modules()`` path: that module's output, flattened per image.

Samples (``sample_indices``) are drawn once with a seeded generator, without replacement, from
the unaugmented train and test splits, and every stage uses the same indices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

ALIASES = ("penultimate", "logits", "conv1", "conv2", "block1", "block2", "pixels")


@dataclass(frozen=True)
class LayerRef:
    """A resolved feature layer: what was asked, the module path, and how to read it."""

    requested: str
    path: str          # named_modules() path, 'forward_features' or 'input'
    kind: str          # 'penultimate' | 'logits' | 'module' | 'pixels'

    @property
    def feature_space(self) -> str:
        return "pixels" if self.kind == "pixels" else "layer"


def safe_layer_name(path: str) -> str:
    """A file-name-safe form of a layer path (dots become dashes)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", path.replace(".", "-")).strip("-") or "layer"


def _nth(model: nn.Module, kind: type, n: int) -> str | None:
    names = [name for name, m in model.named_modules() if name and isinstance(m, kind)]
    return names[n] if len(names) > n else None


def resolve_layer(model: nn.Module, request: str) -> LayerRef:
    """Resolve an alias or module path on ``model`` (see the module docstring)."""
    modules = dict(model.named_modules())
    if request in modules and request:
        return LayerRef(request, request, "module")
    if request == "pixels":
        return LayerRef(request, "input", "pixels")
    if request == "penultimate":
        if not hasattr(model, "forward_features"):
            raise ConfigError(f"{type(model).__name__} has no forward_features(); name a module instead")
        return LayerRef(request, "forward_features", "penultimate")
    if request == "logits":
        return LayerRef(request, "fc", "logits")
    if request in ("conv1", "conv2"):
        path = _nth(model, nn.Conv2d, int(request[-1]) - 1)
    elif request in ("block1", "block2"):
        k = request[-1]
        wanted = {f"layer{k}", f"block{k}", f"pool{k}"}
        path = next((name for name in modules if name and name.rsplit(".", 1)[-1] in wanted), None)
        path = path or _nth(model, nn.MaxPool2d, int(k) - 1)
    else:
        path = None
        near = [n for n in modules if n and request.split(".")[-1] in n][:6]
        raise ConfigError(f"layer '{request}' is neither an alias ({', '.join(ALIASES)}) nor a module of "
                          f"{type(model).__name__}" + (f"; similar modules: {', '.join(near)}" if near else
                                                      "; list them with model.named_modules()"))
    if path is None:
        raise ConfigError(f"layer alias '{request}' has no match in {type(model).__name__}")
    return LayerRef(request, path, "module")


def sample_indices(labels: np.ndarray | torch.Tensor, n: int, seed: int,
                   classes: list[int] | None = None) -> np.ndarray:
    """Sorted indices of ``min(n, available)`` samples drawn without replacement (seeded)."""
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    pool = np.arange(len(y)) if not classes else np.flatnonzero(np.isin(y, classes))
    if n <= 0 or len(pool) == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    pick = rng.choice(pool, size=min(n, len(pool)), replace=False)
    return np.sort(pick).astype(np.int64)


@torch.no_grad()
def extract(model: nn.Module, images: torch.Tensor, mean, std, layers: list[LayerRef],
            batch_size: int = 256, progress=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({layer path: (N, D) float32}, (N,) predicted labels) for uint8 ``images``.

    The model must already be in eval mode; it is run once per batch under ``no_grad``
    with forward hooks on the module layers (removed afterwards).
    """
    from ..data import normalize

    if model.training:
        raise ConfigError("features must come from a model in eval mode")
    device = next(model.parameters()).device
    store: dict[str, list[torch.Tensor]] = {ref.path: [] for ref in layers}
    handles = []
    modules = dict(model.named_modules())
    current: dict[str, torch.Tensor] = {}
    for ref in layers:
        if ref.kind in ("module", "logits"):
            def hook(_m, _inp, out, key=ref.path):
                current[key] = out
            handles.append(modules[ref.path].register_forward_hook(hook))
    preds = []
    try:
        for start in range(0, len(images), batch_size):
            xb = normalize(images[start:start + batch_size].to(device), mean, std)
            current.clear()
            feats = model.forward_features(xb)
            logits = model.head(feats)
            preds.append(logits.argmax(dim=1).cpu())
            for ref in layers:
                if ref.kind == "pixels":
                    t = xb
                elif ref.kind == "penultimate":
                    t = feats
                else:
                    t = current[ref.path]
                store[ref.path].append(t.reshape(len(xb), -1).float().cpu())
            if progress is not None:
                progress.update(len(xb))
    finally:
        for h in handles:
            h.remove()
    out = {k: (torch.cat(v).numpy() if v else np.zeros((0, 0), np.float32)) for k, v in store.items()}
    return out, (torch.cat(preds).numpy() if preds else np.zeros(0, np.int64))
