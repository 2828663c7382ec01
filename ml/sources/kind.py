"""SourceKind: everything about one kind of source collection, declared once in its module
(ml/sources/<kind>.py): its name, the options model of its `source:` section, its reader, and
which option names where its images live. ml/sources/__init__.py lists the kinds; the datasets
file, the catalog, verification and the sensors read them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Callable, Iterable

import pandas as pd
from pydantic import AfterValidator, Field

from ml.options import Options, Text
from ml.sources.record import SourceRecord

if TYPE_CHECKING:
    from ml.dataset_spec import DatasetSpec

SourceReader = Callable[["DatasetSpec"], Iterable[SourceRecord | pd.DataFrame]]


def _extension(value: str) -> str:
    if len(value) < 2 or not value.startswith("."):
        raise ValueError(f"{value!r} is not an extension like .jpg")
    return value


# A path option: relative paths start at the datasets file's base folder (DatasetSpec.source_path).
Location = Annotated[Text, Field(min_length=1)]
Extension = Annotated[Text, AfterValidator(_extension)]


@dataclass(frozen=True)
class SourceKind:
    name: str                       # `kind:` in the datasets file
    options: type[Options]          # the `source:` section
    read: SourceReader              # the section -> the declared samples (ml/catalog.py)
    images_option: str              # the option naming the images' folder (or container file)
