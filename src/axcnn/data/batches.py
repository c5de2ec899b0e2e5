"""Batching straight from uint8 tensors, with vectorised augmentation.

The whole split stays a uint8 tensor on its device; each batch is gathered, augmented in
the uint8 domain and normalised to float32 on the same device. No DataLoader, no worker
processes, no Python loop per image.

Random draws, all from ``generator`` (or torch's global RNG when it is None), in this order:
one ``randperm`` of the split when ``shuffle``; then per batch, for CROP_FLIP, the crop
offsets (rows, then columns) and the flip decisions.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from axcnn.data.dataset import Augment, normalization_constants
from axcnn.errors import ConfigError, DataError

#: Pixels of zero padding on each side before the random crop (CIFAR convention).
CROP_PADDING = 4


def _rand_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def crop_flip(
    images: torch.Tensor, generator: torch.Generator | None = None, padding: int = CROP_PADDING
) -> torch.Tensor:
    """Random crop after zero padding plus a random horizontal flip, per sample, batched.

    Equivalent to torchvision's ``Pad(padding)`` -> ``RandomCrop(H, W)`` ->
    ``RandomHorizontalFlip()`` applied to each image; works on uint8 (N, C, H, W) and keeps
    dtype and device.
    """
    n, c, h, w = images.shape
    dev = images.device
    rdev = _rand_device(generator)
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding), value=0)
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=rdev).to(dev)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=rdev).to(dev)
    flip = torch.randint(0, 2, (n,), generator=generator, device=rdev).to(dev).bool()
    rows = oy[:, None] + torch.arange(h, device=dev)[None, :]  # (N, H)
    cols = torch.arange(w, device=dev)[None, :].expand(n, w)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]
    bidx = torch.arange(n, device=dev)[:, None, None, None]
    cidx = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bidx, cidx, rows[:, None, :, None], cols[:, None, None, :]]


def iterate_batches(
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    augment: Augment,
    mean: Sequence[float],
    std: Sequence[float],
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)``: float32 normalised images (B, C, H, W) and their labels.

    Args:
        images_u8: uint8 images (N, C, H, W) on any device; batches come on that device.
        labels: labels (N,) on the same device.
        batch_size: images per batch (the last one may be smaller unless ``drop_last``).
        shuffle: visit the images in a random order drawn from ``generator``.
        generator: the only source of randomness (torch's global RNG when None).
        augment: :class:`Augment` applied to every batch (use NONE for evaluation).
        mean, std: per-channel constants on the [0, 1] scale: x = (u8 / 255 - mean) / std.
        drop_last: skip a final batch smaller than ``batch_size``.
    """
    if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
        raise DataError(
            f"iterate_batches: images are {images_u8.dtype} {tuple(images_u8.shape)}; "
            "expected uint8 (N, C, H, W) as held by ImageDataset."
        )
    if len(labels) != len(images_u8):
        raise DataError(
            f"iterate_batches: {len(images_u8)} images but {len(labels)} labels; "
            "they must be aligned one to one."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not a positive integer; pass e.g. 128.")
    if not isinstance(augment, Augment):
        raise ConfigError(f"augment={augment!r} is not an axcnn.data.Augment (NONE or CROP_FLIP).")
    c = images_u8.shape[1]
    if len(tuple(mean)) != c or len(tuple(std)) != c:
        raise DataError(
            f"iterate_batches: mean {tuple(mean)} / std {tuple(std)} need one value per "
            f"channel ({c} channels)."
        )
    return _batches(images_u8, labels, batch_size, shuffle, generator, augment, mean, std, drop_last)


def _batches(images, labels, batch_size, shuffle, generator, augment, mean, std, drop_last):
    dev = images.device
    n = images.shape[0]
    scale, shift = normalization_constants(tuple(mean), tuple(std), dev)
    order = None
    if shuffle:
        order = torch.randperm(n, generator=generator, device=_rand_device(generator)).to(dev)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            xb, yb = images[start:end], labels[start:end]
        else:
            idx = order[start:end]
            xb, yb = images[idx], labels[idx]
        if augment is Augment.CROP_FLIP:
            xb = crop_flip(xb, generator)
        yield xb.to(torch.float32) * scale - shift, yb
