"""Reading a folder of images laid out by split and class::

    DIR/train/<class>/*.png|jpg|jpeg|bmp|gif|webp
    DIR/test/<class>/*...

Classes are the sorted sub-folder names of ``train``; ``test`` may use a subset of them.
All images must share one size. If every image is grayscale the dataset has one channel,
otherwise every image is converted to RGB. Pillow is imported only here, when called.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from axcnn.errors import ConfigError, DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def _import_pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "the 'imagefolder' dataset needs Pillow, which is not installed; "
            "install it with `pip install pillow` (or `pip install axcnn[viz]`)."
        ) from exc
    return Image


def _list_split(root: Path, split: str) -> dict[str, list[Path]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(
            f"image folder {root} has no '{split}' sub-folder; expected "
            f"{root}/train/<class>/*.png and {root}/test/<class>/*.png."
        )
    out = {}
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[class_dir.name] = files
    if not out:
        raise DataError(
            f"{split_dir} contains no class folders with images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            f"put images in {split_dir}/<class>/."
        )
    return out


def read_image_folder(root: str | os.PathLike):
    """(train_x, train_y, test_x, test_y, classes) as uint8 (N, C, H, W) / int64 arrays."""
    Image = _import_pil()
    root = Path(root)
    train = _list_split(root, "train")
    test = _list_split(root, "test")
    classes = sorted(train)
    unknown = sorted(set(test) - set(classes))
    if unknown:
        raise DataError(
            f"{root}/test has classes {unknown} that {root}/train lacks; every test class "
            f"needs training images (train classes: {classes})."
        )
    index = {c: i for i, c in enumerate(classes)}

    loaded = {}
    for split, groups in (("train", train), ("test", test)):
        images, labels = [], []
        for cls, files in groups.items():
            for f in files:
                try:
                    with Image.open(f) as im:
                        im.load()
                        images.append(im.copy())
                except Exception as exc:
                    raise DataError(f"cannot decode image {f}: {exc}. Remove or replace the file.") from exc
                labels.append(index[cls])
        loaded[split] = (images, labels)

    all_images = loaded["train"][0] + loaded["test"][0]
    gray = all(im.mode in _GRAY_MODES for im in all_images)
    size = all_images[0].size
    for split, groups in (("train", train), ("test", test)):
        files = [f for fs in groups.values() for f in fs]
        for f, im in zip(files, loaded[split][0]):
            if im.size != size:
                raise DataError(
                    f"image {f} is {im.size[0]}x{im.size[1]} but the others are {size[0]}x{size[1]}; "
                    "all images of an image folder must share one size. Resize them first."
                )

    def stack(images: list) -> np.ndarray:
        arrays = [np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8) for im in images]
        x = np.stack(arrays)
        return x[:, None] if gray else x.transpose(0, 3, 1, 2)

    out = []
    for split in ("train", "test"):
        images, labels = loaded[split]
        out += [np.ascontiguousarray(stack(images)), np.asarray(labels, dtype=np.int64)]
    return out[0], out[1], out[2], out[3], classes
