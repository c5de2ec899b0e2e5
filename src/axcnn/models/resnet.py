"""CIFAR ResNets (He et al. 2016, section 4.2): ResNet-8, ResNet-20, ResNet-56.

One class, :class:`CifarResNet`, parameterised by the number of BasicBlocks per stage::

    [stem.conv] conv3x3 C->16  [stem.bn] BN  ReLU
    [layer1] n BasicBlocks 16 -> 16, stride 1
    [layer2] n BasicBlocks 16 -> 32, first with stride 2
    [layer3] n BasicBlocks 32 -> 64, first with stride 2
    global average pool, flatten                       -> forward_features (64-d)
    [fc] FC 64 -> num_classes                          -> head

A block is ``conv1 bn1 relu1 conv2 bn2 (+ shortcut) relu2``; the shortcut is a 1x1 conv + BN
(``shortcut.0``, ``shortcut.1``) when the shape changes and ``nn.Identity`` otherwise.
Convs have no bias; ReLUs are not in place. Blocks per stage: resnet8 1, resnet20 3,
resnet56 9 (6n+2 layers).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from axcnn.models.base import ImageClassifier, init_weights
from axcnn.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and a residual connection."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(ImageClassifier):
    """ResNet for 32x32 images with three stages of widths 16/32/64."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if len(blocks_per_stage) != len(widths):
            raise ValueError("blocks_per_stage and widths must have the same length")
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False),
                bn=nn.BatchNorm2d(widths[0]),
                relu=nn.ReLU(),
            )
        )
        in_planes = widths[0]
        for i, (n_blocks, planes) in enumerate(zip(blocks_per_stage, widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n_blocks):
                blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, flattened output of the last stage."""
        x = self.stem(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)


@register_model("resnet8", default_dataset="cifar10", input_shape=(3, 32, 32), num_classes=10)
def resnet8(num_classes: int, in_channels: int) -> CifarResNet:
    """ResNet-8: one block per stage (9 convs including two 1x1 shortcuts)."""
    return CifarResNet((1, 1, 1), num_classes=num_classes, in_channels=in_channels)


@register_model(
    "resnet20",
    default_dataset="cifar10",
    input_shape=(3, 32, 32),
    num_classes=10,
    aliases=("resnet",),
)
def resnet20(num_classes: int, in_channels: int) -> CifarResNet:
    """ResNet-20: three blocks per stage (21 convs)."""
    return CifarResNet((3, 3, 3), num_classes=num_classes, in_channels=in_channels)


@register_model("resnet56", default_dataset="cifar100", input_shape=(3, 32, 32), num_classes=100)
def resnet56(num_classes: int, in_channels: int) -> CifarResNet:
    """ResNet-56: nine blocks per stage (57 convs); CIFAR-100 by default."""
    return CifarResNet((9, 9, 9), num_classes=num_classes, in_channels=in_channels)
