"""Columns of text as Arrow arrays: what columnar code on a million samples hands around
instead of a Python string per value.

pandas 3 keeps text in Arrow (as large_string, chunked past 131,072 rows when read back from
Parquet); Arrow's compute functions want one array of one type, so every column of text goes
through `text_column` before it is compared, joined or hashed. A column of ids that is grouped
or hashed per distinct value goes through `Codes` once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa


def is_utf8(text: str) -> bool:
    """Whether `text` can be Arrow text: a name read from disk whose bytes are not UTF-8 comes
    back from os.listdir with them as surrogate escapes, which UTF-8 refuses."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array: its only chunk as it is (combine_chunks copies even one chunk:
    ~70 MB for a million sha256 texts)."""
    if isinstance(column, pa.Array):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def text_column(values, missing: str | None = "") -> pa.StringArray:
    """A column of text (a list, numpy array, pandas Series or Arrow array, chunked or not) as
    one Arrow string array, `missing` where a value is missing (None: left null)."""
    if isinstance(values, pd.Series):
        values = pa.array(values, pa.string()) if len(values) else pa.array([], pa.string())
    elif not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(np.asarray(values, dtype=object), pa.string())
    values = one_array(values).cast(pa.string())
    return values if missing is None else values.fill_null(missing)


@dataclass(frozen=True)
class Codes:
    """A column as codes into its distinct values: row i holds `names[codes[i]]`, `names` in
    order of first appearance (pd.factorize's). Columnar code compares, groups and counts a
    million ids by their codes, and factorizes a column once for all of it (a million distinct
    strings cost ~0.15 s each time)."""

    codes: np.ndarray          # int64 per row
    names: pd.Index            # the distinct values

    @classmethod
    def of(cls, values: pd.Series) -> "Codes":
        codes, names = pd.factorize(values)
        return cls(codes.astype(np.int64, copy=False), names)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def one_per_row(self) -> bool:
        """Every row holds a value of its own (as many distinct values as rows)."""
        return len(self.names) == len(self.codes)

    def values(self) -> pd.Series:
        """The column itself again (one value per row)."""
        return pd.Series(self.names.take(self.codes))
