"""The in-memory dataset: whole splits as uint8 tensors plus what is needed to normalise them.

Images stay ``uint8`` (N, C, H, W) -- on the GPU if you move them there with
:meth:`ImageDataset.to` -- and are converted to normalised float32 one batch at a time by
:func:`axcnn.data.iterate_batches`, which also applies batched augmentation.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Iterator

import torch

from axcnn.errors import ConfigError, DataError


class Augment(enum.Enum):
    """Training-time augmentation applied per batch."""

    NONE = "none"
    #: zero-pad 4 pixels, random crop back to the original size, random horizontal flip
    CROP_FLIP = "crop_flip"


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A dataset held in memory as uint8 image tensors and int64 label tensors.

    Attributes:
        name: dataset name (e.g. ``"cifar10"``).
        train_images, test_images: uint8 tensors of shape (N, C, H, W).
        train_labels, test_labels: int64 tensors of shape (N,), values in [0, num_classes).
        classes: class names; ``classes[k]`` is the name of label ``k``.
        mean, std: per-channel normalisation constants on the [0, 1] scale, the same for
            train and test.
        augment: the augmentation to use for training batches.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment = Augment.NONE

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"{split}_images")
            y = getattr(self, f"{split}_labels")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(
                    f"dataset {self.name!r}: {split}_images is {x.dtype} with shape "
                    f"{tuple(x.shape)}; expected a uint8 tensor (N, C, H, W). Convert it with "
                    "torch.as_tensor(..., dtype=torch.uint8)."
                )
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise DataError(
                    f"dataset {self.name!r}: {split}_labels is {y.dtype} with shape "
                    f"{tuple(y.shape)}; expected int64 of shape ({len(x)},), one label per image."
                )
        if tuple(self.train_images.shape[1:]) != tuple(self.test_images.shape[1:]):
            raise DataError(
                f"dataset {self.name!r}: train images are {tuple(self.train_images.shape[1:])} "
                f"but test images are {tuple(self.test_images.shape[1:])}; both splits must "
                "share one image shape."
            )
        channels = self.train_images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(
                f"dataset {self.name!r}: mean {self.mean} / std {self.std} do not have one "
                f"value per channel ({channels})."
            )
        if any(s <= 0 for s in self.std):
            raise DataError(f"dataset {self.name!r}: std {self.std} must be positive.")

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        """The number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train_images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def device(self) -> torch.device:
        """The device the tensors live on."""
        return self.train_images.device

    # ------------------------------------------------------------------ transforms
    def to(self, device: torch.device | str) -> "ImageDataset":
        """A new dataset with every tensor on ``device``."""
        return dataclasses.replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
        )

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> "ImageDataset":
        """A seeded random subset without replacement (original order kept; None keeps all)."""
        gen = torch.Generator().manual_seed(int(seed))

        def pick(x: torch.Tensor, y: torch.Tensor, k: int | None, split: str):
            if k is None:
                return x, y
            if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= len(x):
                raise ConfigError(
                    f"subset of {self.name!r}: {split}={k!r} is not an integer in 1..{len(x)} "
                    f"(the {split} split has {len(x)} images)."
                )
            idx = torch.randperm(len(x), generator=gen)[:k].sort().values.to(x.device)
            return x[idx], y[idx]

        tx, ty = pick(self.train_images, self.train_labels, train, "train")
        vx, vy = pick(self.test_images, self.test_labels, test, "test")
        return dataclasses.replace(self, train_images=tx, train_labels=ty, test_images=vx, test_labels=vy)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """float32 ``(x / 255 - mean) / std`` for uint8 images (N, C, H, W) or (C, H, W)."""
        return normalize(x, self.mean, self.std)

    # ------------------------------------------------------------------ batching
    def train_batches(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        augment: Augment | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, augmented (``self.augment`` unless given) normalised training batches."""
        from axcnn.data.batches import iterate_batches

        return iterate_batches(
            self.train_images, self.train_labels, batch_size, shuffle=shuffle,
            generator=generator, augment=self.augment if augment is None else augment,
            mean=self.mean, std=self.std, drop_last=drop_last,
        )

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Test batches in order, normalised, never augmented."""
        from axcnn.data.batches import iterate_batches

        return iterate_batches(
            self.test_images, self.test_labels, batch_size, shuffle=False, generator=None,
            augment=Augment.NONE, mean=self.mean, std=self.std,
        )

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, train={len(self.train_labels)}, "
            f"test={len(self.test_labels)}, image_shape={self.image_shape}, "
            f"classes={self.num_classes}, augment={self.augment.name}, device={self.device})"
        )


def normalization_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of shape (C, 1, 1) with ``(x/255 - mean)/std == x*scale - shift``."""
    m = torch.as_tensor(tuple(mean), dtype=torch.float64).view(-1, 1, 1)
    s = torch.as_tensor(tuple(std), dtype=torch.float64).view(-1, 1, 1)
    scale = (1.0 / (255.0 * s)).to(torch.float32).to(device)
    shift = (m / s).to(torch.float32).to(device)
    return scale, shift


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """float32 ``(x / 255 - mean) / std`` with per-channel mean/std (channel dim -3)."""
    if x.dtype != torch.uint8:
        raise DataError(f"normalize expects uint8 images, got {x.dtype}; pass the raw dataset tensor.")
    scale, shift = normalization_constants(mean, std, x.device)
    return x.to(torch.float32) * scale - shift


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the [0, 1] scale."""
    c = images.shape[1]
    sums = torch.zeros(c, dtype=torch.float64)
    sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), 4096):  # chunked: bounded memory for big sets
        chunk = images[start:start + 4096].to(torch.float64) / 255.0
        sums += chunk.sum(dim=(0, 2, 3)).cpu()
        sq += (chunk * chunk).sum(dim=(0, 2, 3)).cpu()
        count += chunk.numel() // c
    mean = sums / max(count, 1)
    var = (sq / max(count, 1) - mean * mean).clamp_min(0)
    std = var.sqrt().clamp_min(1e-3)  # a constant channel must not divide by zero
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
