"""The common shape of every axcnn classifier and its weight initialisation.

Every model splits into ``forward_features(x)`` (the penultimate representation, the input of
the final ``nn.Linear``) and ``head(features)`` (that final layer, held as ``self.fc``), so
features for t-SNE need no hooks. Layers are plain ``nn.Conv2d`` / ``nn.Linear`` /
``nn.BatchNorm2d`` so that :mod:`axcnn.nn` can swap them for approximate subclasses in place.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Base class: ``forward(x) == head(forward_features(x))``; the final layer is ``self.fc``."""

    fc: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The penultimate representation of shape (N, fc.in_features)."""
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the output of :meth:`forward_features`."""
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        return self.head(self.forward_features(x))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convs, BN gamma=1 / beta=0, zero conv and linear biases.

    Linear weights keep PyTorch's default (Kaiming-uniform) initialisation.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
