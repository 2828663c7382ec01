"""The Parquet IO manager: a DataFrame written atomically as <asset key>.parquet, read back
whole, or only the columns an input declares (a million-row catalog read by a step that needs
three of its columns costs those three)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from ml.stored_table import StoredTable, TableEdit
from resources.io_managers import ParquetFrameIOManager


def _stored(tmp_path) -> ParquetFrameIOManager:
    manager = ParquetFrameIOManager(base_dir=str(tmp_path))
    frame = pd.DataFrame({"sample_id": ["a", "b"], "path": ["/x/a.jpg", "/x/b.jpg"],
                          "label": ["cat", "dog"], "width": [3, 4]})
    manager.handle_output(dg.build_output_context(asset_key=["ds", "catalog"]), frame)
    return manager


def test_an_output_records_its_column_schema_and_row_count(tmp_path):
    manager = ParquetFrameIOManager(base_dir=str(tmp_path))
    context = dg.build_output_context(asset_key=["ds", "catalog"])
    manager.handle_output(context, pd.DataFrame({"sample_id": ["a"], "width": [3],
                                                 "used": [True]}))
    meta = context.get_logged_metadata()
    assert meta["dagster/row_count"].value == 1
    schema = meta["dagster/column_schema"].value
    assert [(c.name, c.type) for c in schema.columns] == [
        ("sample_id", "str"), ("width", "int64"), ("used", "bool")]


def test_an_input_reads_every_column_by_default(tmp_path):
    manager = _stored(tmp_path)
    frame = manager.load_input(dg.build_input_context(asset_key=["ds", "catalog"]))
    assert list(frame.columns) == ["sample_id", "path", "label", "width"]
    assert (tmp_path / "ds" / "catalog.parquet").exists()


def test_an_input_that_declares_columns_reads_only_those(tmp_path):
    manager = _stored(tmp_path)
    context = dg.build_input_context(asset_key=["ds", "catalog"],
                                     definition_metadata={"columns": ["sample_id", "width"]})
    frame = manager.load_input(context)
    assert list(frame.columns) == ["sample_id", "width"] and frame["width"].tolist() == [3, 4]


def test_an_input_annotated_stored_table_is_handed_over_unread_and_an_edit_is_written(tmp_path):
    manager = _stored(tmp_path)
    stored = manager.load_input(dg.build_input_context(
        asset_key=["ds", "catalog"], dagster_type=dg.DagsterType(
            lambda _, v: True, name="StoredTable", typing_type=StoredTable)))
    assert isinstance(stored, StoredTable)
    assert stored.paths == (tmp_path / "ds" / "catalog.parquet",)
    edit = TableEdit(stored, pd.DataFrame({"label": ["dog"], "checked": [True]}),
                     keep=np.array([False, True]))
    context = dg.build_output_context(asset_key=["ds", "verified"])
    manager.handle_output(context, edit)
    written = pd.read_parquet(tmp_path / "ds" / "verified.parquet")
    assert written.to_dict("list") == {"sample_id": ["b"], "path": ["/x/b.jpg"],
                                       "label": ["dog"], "width": [4], "checked": [True]}
    meta = context.get_logged_metadata()
    assert meta["dagster/row_count"].value == 1
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == [
        "sample_id", "path", "label", "width", "checked"]


def test_inputs_declared_as_stored_come_as_their_files_unread(tmp_path):
    """A trainer is given the IO managers' own files (AS_STORED), never copies of them."""
    from ml.formats.handles import H5StoreHandle, StoredHandle
    from resources.io_managers import AS_STORED, HandleIOManager

    frames = _stored(tmp_path)
    table = frames.load_input(dg.build_input_context(asset_key=["ds", "catalog"],
                                                     definition_metadata=AS_STORED))
    assert isinstance(table, StoredTable) and table.paths == (tmp_path / "ds" / "catalog.parquet",)
    handles = HandleIOManager(base_dir=str(tmp_path))
    handle = H5StoreHandle(path=str(tmp_path / "store.h5"), num_images=3, num_sequences=1,
                           num_classes=1)
    handles.handle_output(dg.build_output_context(asset_key=["ds", "h5_store"]), handle)
    stored = handles.load_input(dg.build_input_context(asset_key=["ds", "h5_store"],
                                                       definition_metadata=AS_STORED))
    assert stored == StoredHandle(tmp_path / "ds" / "h5_store.handle.json", handle)
    assert handles.load_input(dg.build_input_context(asset_key=["ds", "h5_store"])) == handle
