"""Columns of text as Arrow arrays: what columnar code on a million samples hands around
instead of a Python string per value.

pandas 3 keeps text in Arrow (as large_string, chunked past 131,072 rows when read back from
Parquet); Arrow's compute functions want one array of one type, so every column of text goes
through `text_column` before it is compared, joined or hashed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def text_column(values) -> pa.StringArray:
    """A column of text (a list, numpy array, pandas Series or Arrow array, chunked or not) as
    one Arrow string array, '' where a value is missing."""
    if isinstance(values, pd.Series):
        values = pa.array(values, pa.string()) if len(values) else pa.array([], pa.string())
    elif not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(np.asarray(values, dtype=object), pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.string()).fill_null("")
