"""iterate_batches and the batched crop+flip augmentation."""

from __future__ import annotations

import pytest
import torch

from axcnn.data import Augment, crop_flip, iterate_batches, normalize
from axcnn.errors import ConfigError, DataError

MEAN, STD = (0.5, 0.25, 0.1), (0.5, 0.2, 0.3)


def _data(n=10, c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    y = torch.arange(n, dtype=torch.int64)
    return x, y


def _batches(x, y, bs, **kw):
    kw.setdefault("shuffle", False)
    kw.setdefault("generator", None)
    kw.setdefault("augment", Augment.NONE)
    return list(iterate_batches(x, y, bs, mean=kw.pop("mean", MEAN), std=kw.pop("std", STD), **kw))


def test_shapes_order_and_normalisation():
    x, y = _data(10)
    batches = _batches(x, y, 4)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    xb = torch.cat([b[0] for b in batches])
    assert xb.dtype == torch.float32 and xb.shape == (10, 3, 32, 32)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(xb, (x.float() / 255 - mean) / std, atol=1e-5)
    assert torch.equal(xb, normalize(x, MEAN, STD))  # the same arithmetic as ImageDataset.normalize


def test_drop_last():
    x, y = _data(10)
    assert [len(b[1]) for b in _batches(x, y, 4, drop_last=True)] == [4, 4]
    assert [len(b[1]) for b in _batches(x, y, 5, drop_last=True)] == [5, 5]


def test_shuffle_is_a_seeded_permutation():
    x, y = _data(50)

    def order(seed):
        g = torch.Generator().manual_seed(seed)
        bs = _batches(x, y, 8, shuffle=True, generator=g)
        return torch.cat([b[1] for b in bs]), torch.cat([b[0] for b in bs])

    o1, x1 = order(1)
    assert sorted(o1.tolist()) == list(range(50)) and not torch.equal(o1, y)
    assert torch.equal(x1, normalize(x[o1], MEAN, STD))  # images stay aligned with labels
    assert torch.equal(order(1)[0], o1)
    assert not torch.equal(order(2)[0], o1)


def _all_crops(img, pad=4):
    c, h, w = img.shape
    padded = torch.nn.functional.pad(img, (pad,) * 4)
    crops = []
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            crop = padded[:, oy:oy + h, ox:ox + w]
            crops += [crop, crop.flip(-1)]
    return crops


def test_crop_flip_output_is_a_zero_padded_crop_maybe_flipped():
    x, _ = _data(6, h=12, w=10)
    g = torch.Generator().manual_seed(3)
    out = crop_flip(x, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(len(x)):
        assert any(torch.equal(out[i], c) for c in _all_crops(x[i])), f"sample {i} is not a padded crop"


def test_crop_flip_matches_per_sample_reference_with_documented_draw_order():
    x, _ = _data(8)
    out = crop_flip(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    oy = torch.randint(0, 9, (8,), generator=g)
    ox = torch.randint(0, 9, (8,), generator=g)
    flip = torch.randint(0, 2, (8,), generator=g).bool()
    padded = torch.nn.functional.pad(x, (4,) * 4)
    for i in range(8):
        ref = padded[i, :, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32]
        ref = ref.flip(-1) if flip[i] else ref
        assert torch.equal(out[i], ref)


def test_augmentation_changes_pixels_and_is_deterministic():
    x, y = _data(32)

    def run(seed, global_seed):
        torch.manual_seed(global_seed)  # must not matter: randomness only from the generator
        g = torch.Generator().manual_seed(seed)
        return _batches(x, y, 16, shuffle=True, generator=g, augment=Augment.CROP_FLIP)

    a, b, c = run(0, 1), run(0, 2), run(1, 1)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c))
    # compared with the un-augmented images of the same order, most samples changed
    xa = torch.cat([p[0] for p in a])
    ya = torch.cat([p[1] for p in a])
    plain = normalize(x[ya], MEAN, STD)
    changed = (xa != plain).flatten(1).any(1)
    assert changed.float().mean() > 0.8
    # padding is zero in the uint8 domain, i.e. -mean/std after normalisation
    zero = torch.tensor([(0 - m) / s for m, s in zip(MEAN, STD)]).view(1, 3, 1, 1)
    assert torch.isclose(xa, zero.expand_as(xa), atol=1e-6).any()


def test_no_augmentation_for_none():
    x, y = _data(8)
    g = torch.Generator().manual_seed(0)
    out = torch.cat([b[0] for b in _batches(x, y, 3, generator=g, augment=Augment.NONE)])
    assert torch.equal(out, normalize(x, MEAN, STD))


def test_bad_arguments():
    x, y = _data(4)
    with pytest.raises(DataError, match="uint8"):
        _batches(x.float(), y, 2)
    with pytest.raises(DataError, match="labels"):
        _batches(x, y[:3], 2)
    with pytest.raises(ConfigError, match="batch_size"):
        _batches(x, y, 0)
    with pytest.raises(ConfigError, match="Augment"):
        _batches(x, y, 2, augment="crop_flip")
    with pytest.raises(DataError, match="channel"):
        _batches(x, y, 2, mean=(0.5,), std=(0.5,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_stay_on_the_gpu():
    x, y = _data(20)
    xg, yg = x.cuda(), y.cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    batches = _batches(xg, yg, 8, shuffle=True, generator=g, augment=Augment.CROP_FLIP)
    assert all(b[0].is_cuda and b[1].is_cuda for b in batches)
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(20))
