"""The packed-format assets of a dataset, declared in its `formats:` section:

recordio (train split, insightface legacy layout + property), tfrecords (every split, sharded,
shuffled, DALI-style indexes), h5_store (sequences, solo-learn layout) and validation_memfile
(balanced verification pairs of the val split, seed 002's memfile). Each returns a typed handle
that the handle IO manager passes to training.
"""

import os
from typing import Any, Callable

import dagster as dg
import pandas as pd

from assets.progress_observations import progress_factory_for
from ml.dataset_spec import DatasetSpec
from ml.errors import DatasetError
from ml.formats.handles import Handle
from ml.packing import (RECORDIO_COLUMNS, SPLIT_COLUMNS, build_val_memfile, pack_h5_store,
                        pack_recordio, pack_tfrecords)

def _packing_asset(spec: DatasetSpec, name: str, description: str,
                   pack: Callable[[dg.AssetExecutionContext, pd.DataFrame, Any], tuple[Handle, dict]]):
    @dg.asset(
        name=name, key_prefix=[spec.name], group_name=spec.name,
        ins={"splits": dg.AssetIn(key=dg.AssetKey([spec.name, "splits"]),
                                  metadata={"columns": list(SPLIT_COLUMNS)})},
        io_manager_key="handle_io_manager", kinds={name.split("_")[0]}, description=description,
    )
    def packed(context: dg.AssetExecutionContext, splits: pd.DataFrame) -> dg.Output[Handle]:
        opts = getattr(spec.formats, name)
        try:
            handle, meta = pack(context, splits, opts)
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        return dg.Output(handle, metadata=meta)

    return packed


def build_packing_assets(spec: DatasetSpec) -> list[dg.AssetsDefinition]:
    out = spec.output_dir

    def recordio(context, splits, opts):
        train = splits.loc[splits["split"] == "train", list(RECORDIO_COLUMNS)]   # (one copy)
        h = pack_recordio(train, out / "recordio", shuffle_seed=opts.shuffle_seed,
                          progress_factory=progress_factory_for(context, spec.name))
        return h, {"path": dg.MetadataValue.path(str(out / "recordio")), "images": h.num_images,
                   "classes": h.num_classes, "bytes": _size(h.rec_path), "sha256": h.rec_sha256}

    def tfrecords(context, splits, opts):
        h = pack_tfrecords(splits, out / "tfrecords", seed=opts.seed,
                           target_shard_bytes=int(opts.target_shard_mb * 2 ** 20),
                           progress_factory=progress_factory_for(context, spec.name))
        paths = [p for s in h.shards.values() for p in s]
        return h, {"path": dg.MetadataValue.path(str(out / "tfrecords")), "shards": len(paths),
                   **{f"{s}_records": n for s, n in h.records.items()},
                   "bytes": sum(_size(p) for p in paths), "sha256": h.sha256}

    def h5_store(context, splits, opts):
        path = out / "h5_store" / f"{spec.name}.h5"
        h = pack_h5_store(splits, path, progress_factory=progress_factory_for(context, spec.name))
        return h, {"path": dg.MetadataValue.path(str(path)), "images": h.num_images,
                   "sequences": h.num_sequences, "bytes": _size(h.path), "sha256": h.sha256}

    def validation_memfile(context, splits, opts):
        path = out / "memfiles" / "validation.dat"
        h = build_val_memfile(splits.loc[splits["split"] == "val"], path,
                              set_name=f"{spec.name}_val", n_pairs=opts.pairs,
                              seed=opts.seed, dtype=opts.dtype, image_size=opts.image_size,
                              progress_factory=progress_factory_for(context, spec.name))
        return h, {"path": dg.MetadataValue.path(str(path)), "pairs": h.num_pairs,
                   "shape": str(list(h.shape)), "dtype": h.dtype, "bytes": _size(h.path),
                   "sha256": h.sha256}

    builders = {"recordio": (recordio, "The train split as MXNet RecordIO (insightface legacy layout + property)."),
                "tfrecords": (tfrecords, "Every split as shuffled TFRecord shards with DALI-style indexes."),
                "h5_store": (h5_store, "Object sequences as an HDF5 image store (solo-learn layout, metadata in a sidecar file)."),
                "validation_memfile": (validation_memfile, "Verification pairs of the val split as seed 002's memfile.")}
    return [_packing_asset(spec, name, description=builders[name][1], pack=builders[name][0])
            for name in spec.formats.declared]


def _size(path) -> int:
    return os.path.getsize(path)

