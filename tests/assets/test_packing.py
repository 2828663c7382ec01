"""Packed formats materialized by the prepare graph and consumed downstream through the
handle IO manager, each in the form its input annotation asks for."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import numpy as np

from ml.formats.handles import H5StoreHandle, RecordIOHandle, TFRecordShardsHandle
from ml.formats.h5_store import H5StoreReader
from ml.formats.insightface_rec import open_face_rec
from ml.formats.tfrecord import iter_records, read_index
from ml.formats.example_proto import parse_image_example
from tests.assets.helpers import (definitions_for, make_folder_dataset, materialization_metadata,
                                  materialize_all)

consumed: dict[str, object] = {}


@dg.asset(ins={"rec": dg.AssetIn(key=["ids", "recordio"])})
def uses_recordio(rec: RecordIOHandle) -> None:
    consumed["recordio"] = rec


@dg.asset(ins={"shards": dg.AssetIn(key=["ids", "tfrecords"])})
def uses_tfrecord_paths(shards: list) -> None:
    consumed["tfrecords"] = shards


@dg.asset(ins={"images": dg.AssetIn(key=["ids", "validation_memfile"])})
def uses_memfile(images: np.ndarray) -> None:
    consumed["memfile"] = images


@dg.asset(ins={"store": dg.AssetIn(key=["seq", "h5_store"])})
def uses_h5_store(store: H5StoreHandle) -> None:
    consumed["h5_store"] = store


def test_every_format_is_written_and_consumed_through_the_io_manager(tmp_path, golden):
    folder = make_folder_dataset(tmp_path / "src", classes=30, per_class=6)
    defs = definitions_for(tmp_path, [
        {"name": "ids", "kind": "image_folder",
         "source": {"root": str(folder), "labels_are": "identity"},
         "resize": {"mode": "shorter_side_crop", "width": 112, "height": 112, "workers": 1},
         "splits": {"group_identities": True, "ratios": [0.5, 0.4, 0.1]},
         "formats": {"recordio": {}, "tfrecords": {"target_shard_mb": 0.05},
                     "validation_memfile": {"pairs": 40, "dtype": "uint8"}}},
        {"name": "seq", "kind": "h5_store", "source": {"file": str(golden / "hdf5/sequences.h5")},
         "resize": {"mode": "shorter_side_crop", "width": 32, "height": 32, "workers": 1},
         "formats": {"h5_store": {}}},
    ])
    assets = [*defs.assets, uses_recordio, uses_tfrecord_paths, uses_memfile, uses_h5_store]
    consumed.clear()
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(assets, resources=defs.resources, instance=instance)
    assert result.success

    # Every packer publishes its progress as asset observations (the last one: all done)
    train_count = materialization_metadata(result, ["ids", "splits"])["train_count"]
    for dataset, fmt, what, done in [("ids", "recordio", "ids recordio", train_count),
                                     ("ids", "validation_memfile", "ids validation images", 80),
                                     ("seq", "h5_store", "seq h5 store images", 20)]:
        records = instance.fetch_observations(dg.AssetKey([dataset, fmt]), limit=100).records
        final = {k: v.value for k, v in records[0].asset_observation.metadata.items()}
        assert final["progress_of"] == what, final
        assert final["progress"].startswith(f"{done}/{done} (100.0%)"), final
    tfr = [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in
           instance.fetch_observations(dg.AssetKey(["ids", "tfrecords"]), limit=100).records]
    counts = [(m["progress_of"], m["progress"].split(" ")[0].split("/")) for m in tfr]
    finals = {what: int(done) for what, (done, total) in counts if done == total}
    assert sum(finals.values()) == 180 and "ids train TFRecord shards" in finals, finals

    # RecordIO: legacy layout readable by our insightface reader; labels from headers
    rec = consumed["recordio"]
    assert isinstance(rec, RecordIOHandle)
    train_rows = materialization_metadata(result, ["ids", "splits"])["train_count"]
    index = open_face_rec(Path(rec.rec_path).parent)
    assert index.layout == "legacy" and len(index.image_keys) == rec.num_images == train_rows
    assert rec.num_classes == len(np.unique(index.labels))
    meta = materialization_metadata(result, ["ids", "recordio"])
    assert meta["sha256"] == hashlib.sha256(Path(rec.rec_path).read_bytes()).hexdigest()
    assert Path(meta["path"]).is_dir()

    # TFRecord: a list of shard paths when annotated `list`; every record parses, index agrees
    shards = consumed["tfrecords"]
    assert len(shards) > 3 and all(Path(p).name.endswith(".tfrecord") for p in shards)
    total = 0
    for shard in shards:
        records = list(iter_records(shard))
        assert len(read_index(str(shard) + ".idx", Path(shard).stat().st_size)) == len(records)
        ex = parse_image_example(records[0])
        assert ex.height == 112 and ex.width == 112
        total += len(records)
    assert total == 180

    # Memfile: an ndarray memmap opened read-only when annotated np.ndarray
    images = consumed["memfile"]
    assert isinstance(images, np.memmap) and images.shape == (80, 3, 112, 112)
    assert images.dtype == np.uint8 and not images.flags.writeable

    # HDF5 store: the handle; frames keep their sequence order
    store = consumed["h5_store"]
    assert store.num_images == 20 and store.num_sequences == 4
    with_reader = H5StoreReader(store.path)
    assert len(with_reader.index) == 20
