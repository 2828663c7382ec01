"""COCO / iNaturalist-style JSON source (seed 003).

The label is the category name (its supercategory is kept in the catalog). Images without an
annotation are declared but unused (reported in the used/whole counts).

Options: the `source:` section's model below.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import Field

from ml.errors import SourceError
from ml.options import Options
from ml.safe_paths import InsideRoot
from ml.sources.kind import Location, SourceKind
from ml.sources.record import SourceRecord, require_dir, require_file

if TYPE_CHECKING:
    from ml.dataset_spec import DatasetSpec


class CocoSource(Options):
    """`kind: coco`: a COCO / iNaturalist-style JSON and its images (seed 003)."""

    annotations: Location = Field(description="The JSON of images[], annotations[] and categories[], e.g. train2017.json")
    images_dir: Location = Field(description="The folder the JSON's file_name entries are relative to")


def _load(path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
                          f"{exc.msg}") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise SourceError(f"{path}: a COCO/iNaturalist file needs a '{key}' list")
    return doc


def read_coco(spec: DatasetSpec) -> Iterator[SourceRecord]:
    ann_path = require_file(spec.source_path("annotations"), "source.annotations", spec.name)
    root = require_dir(spec.source_path("images_dir"), "source.images_dir", spec.name)
    inside = InsideRoot(root)          # folders' real paths resolved once
    doc = _load(ann_path)
    try:
        categories = {c["id"]: (str(c["name"]), str(c.get("supercategory", "")))
                      for c in doc["categories"]}
        category_of: dict[Any, Any] = {}
        for a in doc["annotations"]:
            category_of.setdefault(a["image_id"], a["category_id"])
        images = [(im["id"], str(im["file_name"])) for im in doc["images"]]
    except (KeyError, TypeError) as exc:
        raise SourceError(f"{ann_path}: malformed COCO entry, missing field {exc}") from None
    unknown = sorted({c for c in category_of.values() if c not in categories}, key=str)
    if unknown:
        raise SourceError(f"{ann_path}: annotations use category ids {unknown[:5]} that are not "
                          "in 'categories'")
    for index, (image_id, file_name) in enumerate(images):
        cat = category_of.get(image_id)
        name, supercategory = categories[cat] if cat is not None else ("", "")
        path, why = inside.resolve(file_name)
        yield SourceRecord(source_key=file_name, path=path, label=name,
                           supercategory=supercategory, used=cat is not None,
                           index_in_source=index, invalid_reason=why)


KIND = SourceKind("coco", CocoSource, read_coco, images_option="images_dir")
