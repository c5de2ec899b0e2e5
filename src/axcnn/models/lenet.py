"""LeNet-5 for 32x32 inputs (MNIST / Fashion-MNIST zero-padded from 28x28).

Layout (module names in brackets)::

    [features.0] conv5x5 C->6 (bias)  [features.1] BN  ReLU  MaxPool2     32 -> 28 -> 14
    [features.4] conv5x5 6->16 (bias) [features.5] BN  ReLU  MaxPool2     14 -> 10 -> 5
    flatten (400)
    [classifier.0] FC 400->120 ReLU  [classifier.2] FC 120->84 ReLU       -> forward_features
    [fc] FC 84->num_classes                                               -> head
"""

from __future__ import annotations

import torch
from torch import nn

from axcnn.models.base import ImageClassifier, init_weights
from axcnn.models.registry import register_model


class LeNet5(ImageClassifier):
    """LeNet-5 with batch norm after each conv; expects (N, in_channels, 32, 32)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, bias=True),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5, bias=True),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
        )
        self.fc = nn.Linear(84, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 84-d post-ReLU vector."""
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(
    "lenet5",
    default_dataset="fashion_mnist",
    input_shape=(1, 32, 32),
    num_classes=10,
    aliases=("lenet",),
)
def lenet5(num_classes: int, in_channels: int) -> LeNet5:
    """LeNet-5 (2 convs, 3 FC layers)."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels)
