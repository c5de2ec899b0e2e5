"""A deterministic, learnable synthetic image dataset generated in memory.

Each class k has a smooth random prototype P_k (a coarse random grid upsampled bilinearly to
the image size, so it has spatial structure a CNN picks up quickly). A sample of class k is

    x = clip(a * P_k + b + noise, 0, 1) * 255,  a ~ U(0.75, 1.25), b ~ U(-0.1, 0.1),
                                                noise ~ N(0, noise_std^2) per pixel,

shifted by up to ``max_shift`` pixels (circularly). Train and test share the prototypes and
differ in their random draws. Everything comes from one ``torch.Generator`` seeded with
``seed``, so the same arguments always give the same tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from axcnn.errors import ConfigError


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"synthetic dataset: {name}={value!r} must be an integer >= {minimum}.")
    return value


def make_synthetic(
    *,
    image_shape: tuple[int, int, int] = (1, 32, 32),
    train_size: int = 2000,
    test_size: int = 500,
    num_classes: int = 10,
    seed: int = 0,
    noise_std: float = 0.15,
    max_shift: int = 2,
    grid: int = 4,
):
    """(train_x, train_y, test_x, test_y, classes): uint8 (N, C, H, W) and int64 labels.

    Labels are balanced (``i % num_classes`` before shuffling).
    """
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape):
        raise ConfigError(
            f"synthetic dataset: image_shape={image_shape!r} must be three positive integers "
            "(C, H, W), e.g. (1, 32, 32)."
        )
    c, h, w = shape
    _check_int("train_size", train_size, 1)
    _check_int("test_size", test_size, 1)
    _check_int("num_classes", num_classes, 2)
    _check_int("max_shift", max_shift, 0)
    _check_int("grid", grid, 1)
    if not float(noise_std) >= 0:
        raise ConfigError(f"synthetic dataset: noise_std={noise_std!r} must be >= 0.")
    gen = torch.Generator().manual_seed(int(seed))
    coarse = torch.rand(num_classes, c, grid, grid, generator=gen)
    protos = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    # stretch each prototype to the full [0, 1] range so classes differ in contrast, not only mean
    lo = protos.amin(dim=(1, 2, 3), keepdim=True)
    hi = protos.amax(dim=(1, 2, 3), keepdim=True)
    protos = (protos - lo) / (hi - lo).clamp_min(1e-6)

    def split(n: int):
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        a = torch.empty(n, 1, 1, 1).uniform_(0.75, 1.25, generator=gen)
        b = torch.empty(n, 1, 1, 1).uniform_(-0.1, 0.1, generator=gen)
        noise = torch.randn(n, c, h, w, generator=gen) * float(noise_std)
        x = (a * protos[labels] + b + noise).clamp(0, 1)
        if max_shift > 0:
            dy = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
            dx = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
            rows = (torch.arange(h)[None, :] - dy[:, None]) % h  # (N, H)
            cols = (torch.arange(w)[None, :] - dx[:, None]) % w  # (N, W)
            x = x[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
        return (x * 255).round().to(torch.uint8), labels.to(torch.int64)

    train_x, train_y = split(train_size)
    test_x, test_y = split(test_size)
    classes = [f"class{k}" for k in range(num_classes)]
    return train_x, train_y, test_x, test_y, classes
