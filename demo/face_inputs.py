"""Face-training inputs built straight from generated sample faces, without Dagster.

`build_face_inputs(root)` draws the sample face set (demo.sample_data.generate_faces, rendered
directly at the training size), leaves out the files it spoils on purpose, splits the
identities as the prepare job does (ml.splits.assign_splits with held-out identities, same seed
and ratios, so the same people land in train and val) and packs what training reads, with the
packing functions the prepare job's assets call: the train split as an insightface RecordIO
(ml.packing.pack_recordio) and balanced verification pairs of the val identities as a
validation memfile (ml.packing.build_val_memfile). The handles are also written as
`*.handle.json` beside them, ready for `python -m ml.train face --input ...`.

Tests and benchmarks use it to get the face trainer's inputs in a temporary folder in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from demo.sample_data import generate_faces
from ml.atomic import atomic_write_text
from ml.formats.handles import MemfileHandle, RecordIOHandle
from ml.packing import build_val_memfile, pack_recordio
from ml.splits import SplitSpec, assign_splits

VALIDATION_SET = "faces_val"


@dataclass(frozen=True)
class FaceInputs:
    recordio: RecordIOHandle
    validation: MemfileHandle
    recordio_json: Path
    validation_json: Path

    def cli_inputs(self) -> dict[str, str]:
        """{input name: handle path} as the face trainer takes them."""
        return {"recordio": str(self.recordio_json), "validation": str(self.validation_json)}


def face_manifest(root: Path, n_identities: int, per_identity: int, size: int, seed: int,
                  workers: int | None) -> pd.DataFrame:
    """One row per readable generated face: file, label, label_index, group_id, size, split."""
    info = generate_faces(root / "faces", n_identities=n_identities, per_identity=per_identity,
                          size=size, seed=seed, workers=workers)
    spoiled = set(info.missing) | set(info.corrupt)
    rows = [{"sample_id": image_id, "file": str(info.path_of(image_id)), "label": str(identity),
             "label_index": int(identity), "group_id": str(identity), "group_kind": "identity",
             "width": size, "height": size}
            for image_id, identity in zip(info.image_ids, info.identities.tolist())
            if image_id not in spoiled]
    frame = pd.DataFrame(rows)
    frame["split"] = assign_splits(frame, SplitSpec(seed=seed, group_identities=True))
    return frame


def build_face_inputs(root: str | os.PathLike, n_identities: int = 100, per_identity: int = 8,
                      size: int = 112, n_pairs: int = 400, seed: int = 0,
                      workers: int | None = None) -> FaceInputs:
    """Generate, split and pack sample faces under `root` (see the module doc)."""
    root = Path(root)
    frame = face_manifest(root, n_identities, per_identity, size, seed, workers)
    train = frame.loc[frame["split"] == "train"]
    recordio = pack_recordio(train, root / "recordio", shuffle_seed=seed)
    validation = build_val_memfile(frame.loc[frame["split"] == "val"],
                                   root / "memfiles" / "validation.dat", set_name=VALIDATION_SET,
                                   n_pairs=n_pairs, seed=seed, image_size=size)
    recordio_json, validation_json = root / "recordio.handle.json", root / "validation.handle.json"
    atomic_write_text(recordio_json, recordio.to_json())
    atomic_write_text(validation_json, validation.to_json())
    return FaceInputs(recordio, validation, recordio_json, validation_json)
