"""Partition assignment: stable, by sample id only, covering every row exactly once."""

from __future__ import annotations

import pandas as pd
import pytest

from ml.dataset_spec import parse_datasets
from ml.errors import ConfigError
from ml.partitions import rows_in_partition, partition_keys, partition_of


def test_every_row_lands_in_exactly_one_partition_and_adding_rows_moves_none():
    ids = [f"{i:016x}" for i in range(0, 4000, 7)]
    frame = pd.DataFrame({"sample_id": ids, "n": range(len(ids))})
    parts = [rows_in_partition(frame, key, 4) for key in partition_keys(4)]
    assert sorted(sum((list(p["sample_id"]) for p in parts), [])) == sorted(ids)
    assert min(len(p) for p in parts) > len(ids) / 4 * 0.7          # roughly even
    grown = pd.concat([frame, pd.DataFrame({"sample_id": ["new1", "new2"], "n": [0, 0]})])
    for key, part in zip(partition_keys(4), parts):
        again = rows_in_partition(grown, key, 4)
        assert set(part["sample_id"]) <= set(again["sample_id"])
    assert partition_of("abc", 4) == partition_of("abc", 4)


def test_partition_keys_sort_in_order():
    assert partition_keys(3) == ["00", "01", "02"]
    keys = partition_keys(120)
    assert keys[0] == "000" and keys == sorted(keys) and len(set(keys)) == 120


def test_partition_count_is_validated_in_datasets_yaml(tmp_path):
    entry = {"name": "a", "kind": "image_folder", "source": {"root": "x"}}
    assert parse_datasets({"datasets": [entry]}, tmp_path / "d.yaml").datasets[0].partitions == 1
    assert parse_datasets({"datasets": [{**entry, "partitions": 8}]},
                          tmp_path / "d.yaml").datasets[0].partitions == 8
    for bad in (0, -2, "4", 2.5, True):
        with pytest.raises(ConfigError, match="partitions must be a whole number"):
            parse_datasets({"datasets": [{**entry, "partitions": bad}]}, tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match="partition '07' does not exist"):
        rows_in_partition(pd.DataFrame({"sample_id": ["a"]}), "07", 4)


def test_the_older_key_shards_still_reads_and_never_beside_partitions(tmp_path):
    entry = {"name": "a", "kind": "image_folder", "source": {"root": "x"}}
    assert parse_datasets({"datasets": [{**entry, "shards": 4}]},
                          tmp_path / "d.yaml").datasets[0].partitions == 4
    with pytest.raises(ConfigError, match="sets both partitions and shards"):
        parse_datasets({"datasets": [{**entry, "shards": 4, "partitions": 2}]}, tmp_path / "d.yaml")
