"""CNN architectures behind one registry.

>>> from axcnn.models import create_model, list_models, model_info
>>> list_models()
['alexnet_cifar10', 'lenet5', 'resnet20', 'resnet56', 'resnet8', 'vgg16']
>>> model = create_model("resnet")          # alias of resnet20
>>> model_info("lenet").default_dataset
'fashion_mnist'

Every model has ``forward_features(x)`` (the input of its final ``nn.Linear``, which is
``model.fc``) and ``head(features)``; ``forward(x) == head(forward_features(x))``.
Layers are plain ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` with distinct dotted names.

| name | aliases | default data | input | convs |
|---|---|---|---|---|
| lenet5 | lenet | fashion_mnist | 1x32x32 | 2 |
| resnet8 | | cifar10 | 3x32x32 | 9 |
| resnet20 | resnet | cifar10 | 3x32x32 | 21 |
| resnet56 | | cifar100 (100 classes) | 3x32x32 | 57 |
| vgg16 | | cifar10 | 3x32x32 | 13 |
| alexnet_cifar10 | alexnet | cifar10 | 3x32x32 | 5 |
"""

from axcnn.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
    resolve_model_name,
)
from axcnn.models.base import ImageClassifier, init_weights

# Importing the architecture modules registers them.
from axcnn.models.lenet import LeNet5
from axcnn.models.resnet import BasicBlock, CifarResNet
from axcnn.models.vgg import VGG16
from axcnn.models.alexnet import AlexNetCIFAR10

__all__ = [
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "resolve_model_name",
    "ImageClassifier",
    "init_weights",
    "LeNet5",
    "BasicBlock",
    "CifarResNet",
    "VGG16",
    "AlexNetCIFAR10",
]
