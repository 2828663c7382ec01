"""Batches of uint8 images: collated in the DataLoader worker, normalised where it is cheapest.

The cheap end of a face pipeline is `face_train_transform(uint8_output=True)` (or
ToUint8TensorWithMask): items (MaskedItem, ml/items.py) hold uint8 images [C, H, W] and
uint8 masks [1, H, W] (255 visible). Two ways to batch them:

- `Uint8Collate()` keeps the batch uint8 ([B, C, H, W] images, [B, 1, H, W] masks). A worker
  then sends the main process a quarter of the bytes of a float batch and does no float work at
  all; the consumer normalises on its device with `BatchNormalizer(mean, std)` (on a GPU, a few
  microseconds per batch). ml/train/face.py trains this way.
- `NormalizeCollate(mean, std)` normalises in the worker: float32 batches, the same values
  ToTensorWithMask + Normalize give item by item (equal to float rounding), for consumers that
  expect float batches from the DataLoader.

Labels, flags and float (feature-map) masks are collated by torch's default_collate either way,
and a batch is of its items' type (each field stacked), so masks are found by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from ml.errors import ConfigError
from ml.items import with_fields


def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An empty tensor for a batch; in a DataLoader worker it lives in shared memory (as
    torch's default_collate allocates), so sending it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    template = torch.empty(0, dtype=dtype)
    storage = template._typed_storage()._new_shared(math.prod(shape), device=template.device)
    return template.new(storage).resize_(shape)


def stack_images(images: Sequence[Any]) -> Any:
    """Images of one batch stacked as [B, C, H, W]. uint8 channel-first views of contiguous
    [H, W, C] pixels are stacked as pixel rows (a plain copy, several times faster than
    gathering the channel-first views) and returned as a channel-first view of the stack;
    anything else goes to default_collate."""
    if all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.ndim == 3
           and t.permute(1, 2, 0).is_contiguous() for t in images):
        rows = [t.permute(1, 2, 0) for t in images]
        out = batch_tensor((len(rows), *rows[0].shape), torch.uint8)
        return torch.stack(rows, out=out).permute(0, 3, 1, 2)
    return default_collate(list(images))


def is_uint8_mask_batch(value: Any) -> bool:
    """A [B, 1, H, W] uint8 tensor: a batch of pixel masks, 255 visible / 0 occluded."""
    return (isinstance(value, torch.Tensor) and value.dtype == torch.uint8
            and value.ndim == 4 and value.shape[1] == 1)


class Uint8Collate:
    """A DataLoader collate_fn that keeps uint8 images and masks uint8: images (the first field
    of each item) become a [B, C, H, W] batch (a channel-first view of stacked pixel rows, i.e.
    channels-last memory), masks [B, 1, H, W]; the other fields are collated by
    default_collate. The batch is of the items' type. Normalise it on its device with
    BatchNormalizer."""

    def __call__(self, items: Sequence[Any]) -> Any:
        if not items or not isinstance(items[0], (tuple, list)):
            return stack_images(items)
        columns = list(zip(*items))
        return with_fields(items[0], [stack_images(columns[0]),
                                      *(default_collate(list(column)) for column in columns[1:])])

    def __repr__(self) -> str:
        return "Uint8Collate()"


class BatchNormalizer:
    """uint8 batches -> float32: images (x / 255 - mean) / std, pixel masks / 255.

    `images(batch, out=None)` works on any device (the offsets are kept per device) and returns
    a tensor in the memory format of `out` (default: contiguous NCHW); `masks(batch)` divides a
    uint8 [B, 1, H, W] mask batch by 255 and passes anything else (float masks) through;
    calling the object on a collated batch [images, labels, masks, ...] normalises images and
    masks and keeps the rest.
    """

    def __init__(self, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5)):
        if any(s == 0 for s in std) or len(mean) != len(std):
            raise ConfigError(f"BatchNormalizer: mean={list(mean)}, std={list(std)}; give one "
                              "non-zero std per mean")
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(255 * mean, 1 / (255 * std)) as [1, C, 1, 1] float32 tensors on `device`."""
        found = self._constants.get(device)
        if found is None:
            offset = torch.tensor([255.0 * m for m in self.mean], device=device)
            scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=device)
            found = self._constants[device] = (offset.view(1, -1, 1, 1), scale.view(1, -1, 1, 1))
        return found

    def images(self, images: Any, out: torch.Tensor | None = None) -> Any:
        """A uint8 image batch as normalised float32 (anything else is returned as it is)."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            return images
        if images.ndim != 4 or images.shape[1] != len(self.mean):
            raise ConfigError(f"{type(self).__name__}: expected uint8 images [B, {len(self.mean)}"
                              f", H, W], got {list(images.shape)}")
        offset, scale = self.constants(images.device)
        if out is None:
            out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        return torch.sub(images, offset, out=out).mul_(scale)

    def masks(self, masks: Any, out: torch.Tensor | None = None) -> Any:
        """A uint8 pixel-mask batch as float32 0..1 (anything else is returned as it is)."""
        if not is_uint8_mask_batch(masks):
            return masks
        if out is None:
            out = torch.empty(masks.shape, dtype=torch.float32, device=masks.device)
        return torch.div(masks, 255.0, out=out)

    def __call__(self, batch: Any) -> Any:
        """A batch (or bare images) with its images (first field) and its `mask` field
        normalised, of the same item type."""
        if not isinstance(batch, (tuple, list)):
            return self.images(batch)
        values = [self.images(batch[0]), *batch[1:]]
        fields = getattr(batch, "_fields", ())
        if "mask" in fields:
            values[fields.index("mask")] = self.masks(values[fields.index("mask")])
        return with_fields(batch, values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


FACE_NORMALIZER = BatchNormalizer()    # face_train_transform's mean and std (0.5): [-1, 1]


class NormalizeCollate(BatchNormalizer):
    """A DataLoader collate_fn for items of uint8 tensors that gives float32 batches: images
    (x / 255 - mean) / std, uint8 masks 0..1, in two passes over the batch instead of six per
    item; in a worker the float batches are allocated in shared memory, as default_collate's
    are. Use Uint8Collate + BatchNormalizer on the device instead when the consumer can."""

    def __init__(self, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5)):
        super().__init__(mean, std)
        self._stack = Uint8Collate()

    def __call__(self, items: Sequence[Any]) -> Any:
        return super().__call__(self._stack(items))

    def images(self, images: Any, out: torch.Tensor | None = None) -> Any:
        if out is None and isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
            out = batch_tensor(tuple(images.shape))
        return super().images(images, out)

    def masks(self, masks: Any, out: torch.Tensor | None = None) -> Any:
        if out is None and is_uint8_mask_batch(masks):
            out = batch_tensor(tuple(masks.shape))
        return super().masks(masks, out)
