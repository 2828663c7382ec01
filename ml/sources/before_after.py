"""Before/after pairs (seed 004): a flat folder of `X_before.jpg` / `X_after.jpg`.

Each pair is one group: a pair never straddles two splits.

Options: the `source:` section's model below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

from pydantic import Field

from ml.errors import SourceError
from ml.options import Options, Text
from ml.safe_paths import InsideRoot
from ml.sources.kind import Location, SourceKind
from ml.sources.record import IMAGE_EXTENSIONS, SourceRecord, require_dir

if TYPE_CHECKING:
    from ml.dataset_spec import DatasetSpec


class BeforeAfterSource(Options):
    """`kind: before_after`: a flat folder of `X_before.jpg` / `X_after.jpg` pairs (seed 004)."""

    root: Location = Field(description="The folder holding the pairs")
    before_suffix: Text = Field("_before", description="What ends a before image's name (before the extension)")
    after_suffix: Text = Field("_after", description="What ends an after image's name")
    on_unpaired: Literal["skip", "error"] = Field("skip", description="A before without its after (or the reverse): skip it (reported) or stop")


def pair_stems(names: list[str], before: str, after: str) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Group file names into {stem: {'before': name, 'after': name}}; return (pairs, unpaired)."""
    pairs: dict[str, dict[str, str]] = {}
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        for role, suffix in (("before", before), ("after", after)):
            if stem.endswith(suffix):
                pairs.setdefault(stem[: -len(suffix)], {})[role] = name
    unpaired = [n for s, roles in pairs.items() if len(roles) != 2 for n in roles.values()]
    return {s: r for s, r in pairs.items() if len(r) == 2}, sorted(unpaired)


def read_before_after(spec: DatasetSpec) -> Iterator[SourceRecord]:
    root = require_dir(spec.source_path("root"), "source.root", spec.name)
    inside = InsideRoot(root)          # folders' real paths resolved once
    before, after = spec.source.before_suffix, spec.source.after_suffix
    on_unpaired = spec.source.on_unpaired
    names = sorted(e.name for e in os.scandir(root) if not e.name.startswith("."))
    pairs, unpaired = pair_stems(names, before, after)
    if unpaired and on_unpaired == "error":
        raise SourceError(f"dataset {spec.name!r}: {len(unpaired)} image(s) in {root} have no "
                          f"partner ({', '.join(unpaired[:5])}); add the missing halves or set "
                          "source.on_unpaired: skip")
    if not pairs:
        raise SourceError(f"dataset {spec.name!r}: no '<name>{before}.<ext>' / "
                          f"'<name>{after}.<ext>' pairs in {root}")
    index = 0
    for stem in sorted(pairs):
        for role in ("before", "after"):
            name = pairs[stem][role]
            path, why = inside.resolve(name)
            yield SourceRecord(source_key=name, path=path, label=role, group_id=stem,
                               group_kind="pair", role=role, index_in_source=index,
                               invalid_reason=why)
            index += 1


def unpaired_files(spec: DatasetSpec) -> list[str]:
    root = Path(spec.source_path("root"))
    names = sorted(e.name for e in os.scandir(root) if not e.name.startswith("."))
    return pair_stems(names, spec.source.before_suffix, spec.source.after_suffix)[1]


KIND = SourceKind("before_after", BeforeAfterSource, read_before_after, images_option="root")
