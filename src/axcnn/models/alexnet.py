"""An AlexNet-style network for CIFAR-10 (32x32 inputs).

Five conv3x3 (no bias) + BN + ReLU in ``features``::

    features.0  C->64    BN ReLU MaxPool2      32 -> 16
    features.4  64->128  BN ReLU MaxPool2      16 -> 8
    features.8  128->256 BN ReLU
    features.11 256->256 BN ReLU
    features.14 256->256 BN ReLU MaxPool2       8 -> 4
    flatten (256*4*4 = 4096)
    [classifier] Dropout .5, FC 4096->1024 (classifier.1), ReLU,
                 Dropout .5, FC 1024->1024 (classifier.4), ReLU   -> forward_features
    [fc] FC 1024->num_classes                                     -> head
"""

from __future__ import annotations

import torch
from torch import nn

from axcnn.models.base import ImageClassifier, init_weights
from axcnn.models.registry import register_model


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class AlexNetCIFAR10(ImageClassifier):
    """AlexNet-style CIFAR network; expects (N, in_channels, 32, 32)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, 64),
            nn.MaxPool2d(2),
            *_conv_bn_relu(64, 128),
            nn.MaxPool2d(2),
            *_conv_bn_relu(128, 256),
            *_conv_bn_relu(256, 256),
            *_conv_bn_relu(256, 256),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 4 * 4, 1024),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(1024, 1024),
            nn.ReLU(),
        )
        self.fc = nn.Linear(1024, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1024-d output after the second FC's ReLU."""
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(
    "alexnet_cifar10", default_dataset="cifar10", input_shape=(3, 32, 32), num_classes=10,
    aliases=("alexnet",),
)
def alexnet_cifar10(num_classes: int, in_channels: int) -> AlexNetCIFAR10:
    """AlexNet for CIFAR-10 (5 convs, 3 FC layers)."""
    return AlexNetCIFAR10(num_classes=num_classes, in_channels=in_channels)
