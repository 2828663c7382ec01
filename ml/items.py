"""The item contract of ml.datasets: every dataset returns one named tuple type, so a consumer
finds a field by its name, never by how long the tuple is.

torchvision keeps one `(sample, target)` contract and gives other shapes their own dataset
class; the shapes here:

| item | fields | returned by |
| --- | --- | --- |
| Item | image, label | the image datasets (ImageFolder, RecordIO, HDF5 store, TFRecord streams) |
| MaskedItem | image, label, mask | the same, when the transform yields (image, mask) (seed 002's occlusion transforms) |
| FlaggedItem | image, label, missing | HybridDataset (missing: a placeholder stood in for an absent file) |
| MaskedFlaggedItem | image, label, mask, missing | HybridDataset with a mask transform |
| PairItem | view_a, view_b, label, fallback | TemporalPairDataset (fallback: no other frame, the anchor paired with itself) |
| BeforeAfterItem | before, after | BeforeAfterDataset |
| PairImageItem | image, issame, dataname, index | ValidationMemfileDataset (one image of a verification pair; pairs are rows 2k, 2k+1) |

They are tuples, so `image, label = item` and `batch[0]` still work, and torch's
default_collate and pin_memory keep the type: a batch has the item's fields, each stacked
(ml/collate.py keeps them too). `mask_of(batch)` is how a consumer asks for the masks: an
(image, label, missing) item can no longer pass for (image, label, mask). The module sits
beside ml.datasets, not in it, so that collating and training code import no dataset.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Item(NamedTuple):
    image: Any
    label: Any


class MaskedItem(NamedTuple):
    image: Any
    label: Any
    mask: Any


class FlaggedItem(NamedTuple):
    image: Any
    label: Any
    missing: bool


class MaskedFlaggedItem(NamedTuple):
    image: Any
    label: Any
    mask: Any
    missing: bool


class PairItem(NamedTuple):
    view_a: Any
    view_b: Any
    label: int
    fallback: bool


class BeforeAfterItem(NamedTuple):
    before: Any
    after: Any


class PairImageItem(NamedTuple):
    image: Any
    issame: bool
    dataname: int
    index: int


def make_item(output: Any, label: Any) -> Item | MaskedItem:
    """The item of a transformed image and its label: MaskedItem when the transform's `output`
    is an (image, mask) pair, else Item."""
    if isinstance(output, tuple) and len(output) == 2:
        return MaskedItem(output[0], label, output[1])
    return Item(output, label)


def flagged(item: Item | MaskedItem, missing: bool) -> FlaggedItem | MaskedFlaggedItem:
    """`item` with HybridDataset's placeholder flag."""
    if isinstance(item, MaskedItem):
        return MaskedFlaggedItem(*item, missing)
    return FlaggedItem(*item, missing)


def mask_of(batch: Any) -> Any | None:
    """The masks of an item or batch (its `mask` field), None when it has none."""
    return getattr(batch, "mask", None)


def with_fields(batch: Any, values: list) -> Any:
    """`values` (one per field of `batch`) as the same item type (a plain list stays a list)."""
    return type(batch)(*values) if hasattr(type(batch), "_fields") else values
