"""Datasets as whole uint8 tensors, with batched augmentation on the tensors' device.

>>> from axcnn.data import load_dataset, iterate_batches
>>> ds = load_dataset("fashion_mnist")                 # finds Debian's copy, AXCNN_DATA_DIR, ...
>>> ds = ds.to("cuda")                                 # the whole set moves once, as uint8
>>> gen = torch.Generator(device="cuda").manual_seed(0)
>>> for x, y in ds.train_batches(128, generator=gen):  # float32, normalised, augmented
...     ...

Names: ``mnist``, ``fashion_mnist`` (28x28 zero-padded to 32x32, the classic LeNet-5 input),
``cifar10``, ``cifar100``, ``synthetic``, ``imagefolder``. See :mod:`axcnn.data.loaders` for
where files are looked for, normalisation constants and downloads.
"""

from axcnn.data.batches import crop_flip, iterate_batches
from axcnn.data.dataset import Augment, ImageDataset, channel_stats, normalize
from axcnn.data.loaders import candidate_dirs, data_root, list_datasets, load_dataset

__all__ = [
    "Augment",
    "ImageDataset",
    "candidate_dirs",
    "channel_stats",
    "crop_flip",
    "data_root",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "normalize",
]
