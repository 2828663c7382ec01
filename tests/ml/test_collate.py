"""Uint8Collate + BatchNormalizer: uint8 batches from the workers, normalised on the device,
give the float batches of the default face transform."""

import pytest
import torch
from torch.utils.data import DataLoader

from ml.collate import BatchNormalizer, NormalizeCollate, Uint8Collate
from ml.errors import ConfigError
from ml.items import Item, MaskedItem
from ml.transforms import face_train_transform
from tests.ml.test_transforms import TransformedNoise

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


@pytest.mark.parametrize("workers", [0, 2])
def test_uint8_batches_normalised_later_equal_the_float_batches(workers):
    float_items = DataLoader(TransformedNoise(face_train_transform(mean=MEAN, std=STD, seed=2)),
                             batch_size=8)
    uint8_items = DataLoader(TransformedNoise(face_train_transform(mean=MEAN, std=STD, seed=2,
                                                                   uint8_output=True)),
                             batch_size=8, collate_fn=Uint8Collate(), num_workers=workers)
    normalise = BatchNormalizer(MEAN, STD)
    for (images, labels, masks), batch in zip(float_items, uint8_items):
        pixels, labels8, masks8 = batch
        assert pixels.dtype == masks8.dtype == torch.uint8        # a quarter of the float bytes
        assert pixels.shape == (8, 3, 112, 112) and masks8.shape == (8, 1, 112, 112)
        if workers == 0:                   # the same items, collated in this process
            images8, _, masks_f = normalise(batch)
            assert images8.dtype == torch.float32 and images8.is_contiguous()
            assert torch.allclose(images, images8, atol=1e-6) and torch.equal(masks, masks_f)
            assert torch.equal(labels, labels8) and (masks_f == 0).any()
        else:                              # workers draw their own randomness: check the ranges
            images8 = normalise.images(pixels)
            assert images8.min() >= (0 - max(MEAN)) / min(STD) - 1e-5
            assert set(normalise.masks(masks8).unique().tolist()) <= {0.0, 1.0}


def test_normaliser_output_layout_and_pass_through():
    pixels = torch.randint(0, 256, (4, 112, 112, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    normalise = BatchNormalizer()
    out = torch.empty(pixels.shape, memory_format=torch.channels_last)
    images = normalise.images(pixels, out=out)
    assert images is out and images.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(images, (pixels.float() / 255 - 0.5) / 0.5, atol=1e-6)
    floats = torch.rand(4, 1, 7, 7)
    assert normalise.masks(floats) is floats and normalise.images(images) is images
    with pytest.raises(ConfigError, match=r"\[B, 3, H, W\]"):
        normalise.images(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="std"):
        BatchNormalizer((0.5, 0.5), (0.5, 0.0))


def test_normalize_collate_is_uint8_collate_then_normaliser():
    items = [MaskedItem(torch.randint(0, 256, (112, 112, 3), dtype=torch.uint8).permute(2, 0, 1),
                        i, torch.randint(0, 2, (1, 112, 112), dtype=torch.uint8) * 255)
             for i in range(5)]
    direct = NormalizeCollate(MEAN, STD)(items)
    later = BatchNormalizer(MEAN, STD)(Uint8Collate()(items))
    for a, b in zip(direct, later):
        assert torch.equal(a, b)


def test_face_trainer_batches_reach_the_device_normalised():
    """ml/train/face.py's batch_to_device: uint8 worker batches become the float batches the
    default transform gives; float batches (already normalised) pass through unchanged."""
    from ml.train.ddp import DistEnv
    from ml.train.face import batch_to_device

    env = DistEnv(0, 1, 0, torch.device("cpu"))
    items = [MaskedItem(torch.randint(0, 256, (112, 112, 3), dtype=torch.uint8).permute(2, 0, 1),
                        i, torch.randint(0, 2, (1, 112, 112), dtype=torch.uint8) * 255)
             for i in range(4)]
    images, labels, masks = batch_to_device(Uint8Collate()(items), env, channels_last=True)
    expected = (torch.stack([p.float() for p, _, _ in items]) / 255 - 0.5) / 0.5
    assert images.dtype == torch.float32 and images.is_contiguous()
    assert torch.allclose(images, expected, atol=1e-6) and labels.dtype == torch.int64
    assert torch.equal(masks, torch.stack([m for _, _, m in items]).float() / 255)
    floats = MaskedItem(expected, torch.arange(4), torch.ones(4, 1, 112, 112))
    again, _, ones = batch_to_device(floats, env, channels_last=False)
    assert torch.equal(again, expected) and torch.equal(ones, floats.mask)
    _, _, none = batch_to_device(Item(expected, torch.arange(4)), env, channels_last=False)
    assert none is None


def test_batches_keep_their_items_fields_so_a_flag_is_never_taken_for_a_mask():
    """A hybrid dataset's (image, label, missing) has the length of (image, label, mask): the
    batch says which it is by its fields."""
    from ml.items import FlaggedItem, mask_of
    from ml.train.ddp import DistEnv
    from ml.train.face import batch_to_device

    pixels = [torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8) for _ in range(3)]
    flagged = Uint8Collate()([FlaggedItem(p, i, i == 1) for i, p in enumerate(pixels)])
    assert isinstance(flagged, FlaggedItem) and flagged.missing.tolist() == [False, True, False]
    assert mask_of(flagged) is None
    images, labels, masks = batch_to_device(flagged, DistEnv(0, 1, 0, torch.device("cpu")),
                                            channels_last=False)
    assert masks is None and images.dtype == torch.float32 and labels.tolist() == [0, 1, 2]
    normalised = NormalizeCollate()([MaskedItem(p, i, torch.full((1, 8, 8), 255, dtype=torch.uint8))
                                     for i, p in enumerate(pixels)])
    assert isinstance(normalised, MaskedItem) and torch.equal(normalised.mask,
                                                              torch.ones(3, 1, 8, 8))
