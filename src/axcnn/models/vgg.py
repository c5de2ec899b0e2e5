"""VGG-16 for CIFAR (32x32 inputs) with batch norm.

Thirteen conv3x3 (with bias) + BN + ReLU in ``features`` with a MaxPool2 after convs 2, 4, 7,
10 and 13 (32 -> 1 pixel), then::

    flatten (512)
    [classifier] Dropout .5, FC 512->4096 (classifier.1), ReLU,
                 Dropout .5, FC 4096->4096 (classifier.4), ReLU   -> forward_features
    [fc] FC 4096->num_classes                                     -> head
"""

from __future__ import annotations

import torch
from torch import nn

from axcnn.models.base import ImageClassifier, init_weights
from axcnn.models.registry import register_model

#: Output channels per conv; "M" is a 2x2 max pool.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


class VGG16(ImageClassifier):
    """VGG-16 with BN; expects (N, in_channels, 32, 32)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = int(item)
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=True), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(512, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
        )
        self.fc = nn.Linear(4096, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 4096-d output after the second FC's ReLU."""
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("vgg16", default_dataset="cifar10", input_shape=(3, 32, 32), num_classes=10)
def vgg16(num_classes: int, in_channels: int) -> VGG16:
    """VGG-16 with BN (13 convs, 3 FC layers)."""
    return VGG16(num_classes=num_classes, in_channels=in_channels)
