"""The torch datasets, each iterated end to end by a DataLoader with two workers.

Images are tiny solid-colour PNGs (lossless) whose colour encodes what the image is, so a test
can tell from a decoded batch which sample, frame or record it got.
"""

from __future__ import annotations

import io
import json
import pickle
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader

import ml.datasets.recordio as recordio_module
from ml.augmenter import Augmenter
from ml.datasets import (H5StoreDataset, HybridDataset, ImageFolderDataset, RecordIODataset,
                         TemporalPairDataset, TFRecordStream, ValidationMemfileDataset)
from ml.datasets.pipeline import decode_bytes, decode_plain_jpeg
from ml.datasets.tfrecord_stream import shuffle_buffered
from ml.errors import ConfigError, DatasetError, FormatError, ImageError, PathEscapeError
from ml.formats.example_proto import encode_example
from ml.formats.h5_store import H5Item, write_h5_store
from ml.formats.handles import (H5StoreHandle, MemfileHandle, RecordIOHandle,
                                TFRecordShardsHandle)
from ml.formats.insightface_bin import build_validation_memfile
from ml.formats.insightface_rec import write_insightface_legacy
from ml.formats.example_proto import make_image_example
from ml.formats.tfrecord import ShardWriter, write_shards
from ml.imageio import load_rgb
from ml.items import FlaggedItem, Item, MaskedItem, PairImageItem, PairItem, mask_of
from ml.samplers import RandomIdentitySampler
from ml.transforms import SyntheticOcclusionMask, ToTensorWithMask

TO_UINT8 = T.PILToTensor()          # exact pixel values: colours identify the images


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def colors_of(images: torch.Tensor) -> list[tuple[int, ...]]:
    """The (solid) colour of each CHW uint8 image of a batch."""
    return [tuple(image[:, 0, 0].tolist()) for image in images]


def loader(dataset, **kwargs) -> DataLoader:
    kwargs.setdefault("batch_size", 4)
    return DataLoader(dataset, num_workers=2, **kwargs)


# ---------------------------------------------------------------------------------- decoding

def jpeg(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, **options)
    return out.getvalue()


def test_decode_bytes_fast_path_matches_pillow_and_leaves_the_rest_to_load_rgb():
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    photo = Image.fromarray(pixels)
    for data in (jpeg(photo), jpeg(photo.convert("L")), jpeg(photo.convert("CMYK"))):
        fast = decode_bytes(data, "x.jpg")
        assert fast.mode == "RGB" and fast.size == (56, 40)
        assert np.array_equal(np.asarray(fast), np.asarray(load_rgb(data)))
    assert decode_plain_jpeg(jpeg(photo)) is not None
    assert decode_plain_jpeg(jpeg(photo.convert("CMYK"))) is None     # Pillow converts CMYK

    exif = Image.Exif()
    exif[0x0112] = 6                                                    # rotate 90 on display
    rotated = jpeg(photo, exif=exif.tobytes())
    assert decode_plain_jpeg(rotated) is None
    assert decode_bytes(rotated, "r.jpg").size == (40, 56)

    whole = jpeg(photo)
    with pytest.raises(ImageError, match="cut.jpg: truncated"):
        decode_bytes(whole[:len(whole) // 2], "cut.jpg")
    with pytest.raises(ImageError, match="junk.jpg"):
        decode_bytes(b"\xff\xd8 not a jpeg", "junk.jpg")


# ------------------------------------------------------------------------------ image folder

def make_folder(root: Path) -> dict[str, int]:
    """root/<class>/<n>.png with colour (class number * 40, n, 7); returns file -> class."""
    labels = {}
    for c, name in enumerate(["cat", "dog", "emu"]):
        (root / name).mkdir(parents=True)
        for n in range(3 + c):
            path = root / name / f"{n}.png"
            path.write_bytes(png((c * 40, n, 7)))
            labels[str(path)] = c
    (root / "dog" / "notes.txt").write_text("not an image")
    return labels


def test_image_folder_tree_and_manifest_give_the_same_items(tmp_path):
    labels = make_folder(tmp_path / "root")
    by_tree = ImageFolderDataset(tmp_path / "root", TO_UINT8)
    assert by_tree.classes == ["cat", "dog", "emu"] and len(by_tree) == 12
    manifest = pd.DataFrame({"file": list(labels), "label_index": list(labels.values()),
                             "label": [["cat", "dog", "emu"][v] for v in labels.values()]})
    by_manifest = ImageFolderDataset.from_manifest(manifest, TO_UINT8)
    assert by_manifest.classes == by_tree.classes
    for dataset in (by_tree, by_manifest):
        seen = []
        for images, batch_labels in loader(dataset, shuffle=True):
            for color, label in zip(colors_of(images), batch_labels.tolist()):
                assert color[0] == label * 40          # the colour says the class
                seen.append(color)
        assert len(seen) == len(set(seen)) == 12


def test_image_folder_dataset_lists_what_the_catalog_declares_and_no_escaping_link(tmp_path):
    """One listing rule for the catalog's image-folder source and the training dataset: the
    same files, in the same order, and a symlink leaving the root is read by neither."""
    from ml.dataset_spec import parse_datasets
    from ml.sources import SOURCE_KINDS
    make_folder(tmp_path / "root")
    (tmp_path / "outside.png").write_bytes(png((250, 0, 0)))
    (tmp_path / "root" / "cat" / "9.png").symlink_to(tmp_path / "outside.png")
    (tmp_path / "root" / "dog" / "8.png").symlink_to(tmp_path / "root" / "emu" / "0.png")
    (tmp_path / "root" / "hidden_link").symlink_to(tmp_path / "root" / "emu", target_is_directory=True)
    spec = parse_datasets({"storage_root": str(tmp_path / "out"), "datasets": [
        {"name": "d", "kind": "image_folder", "source": {"root": str(tmp_path / "root")}}]},
        tmp_path / "datasets.yaml").datasets[0]
    records = list(SOURCE_KINDS["image_folder"].read(spec))
    declared = [r.path for r in records if not r.invalid_reason]
    assert [r.source_key for r in records if r.invalid_reason] == ["cat/9.png"]
    dataset = ImageFolderDataset(tmp_path / "root", TO_UINT8)
    assert list(dataset.samples) == declared and len(declared) == 13   # the inside link is read
    assert dataset.classes == ["cat", "dog", "emu"], "a symlinked folder is no class"


def test_image_folder_swaps_channels_and_yields_masks(tmp_path):
    make_folder(tmp_path / "root")
    swapped = ImageFolderDataset(tmp_path / "root", TO_UINT8, swap_color_channel=True)
    image, label = swapped[len(swapped) - 1]             # emu/4.png: RGB (80, 4, 7)
    assert label == 2 and image[:, 0, 0].tolist() == [7, 4, 80]
    augmented = ImageFolderDataset(tmp_path / "root", TO_UINT8, augmenter=Augmenter(
        photometric_augmentation_prob=1.0, seed=0))
    plain = ImageFolderDataset(tmp_path / "root", TO_UINT8)
    changed = [not torch.equal(augmented[i][0], plain[i][0]) for i in range(len(plain))]
    assert sum(changed) >= len(plain) - 1 and augmented[0][0].shape == plain[0][0].shape
    masked = ImageFolderDataset(tmp_path / "root", T.Compose([
        SyntheticOcclusionMask(prob=1.0, feature_map_size=3, seed=1), ToTensorWithMask()]))
    assert type(plain[0]) is Item and type(masked[0]) is MaskedItem      # one item contract
    batch = next(iter(loader(masked)))
    assert type(batch) is MaskedItem                      # the batch keeps the item's fields
    images, batch_labels, masks = batch
    assert images.shape == (4, 3, 6, 8) and masks.shape == (4, 1, 3, 3)
    assert batch_labels.tolist() == [0, 0, 0, 1]


def test_manifest_refuses_unlabeled_rows_and_missing_columns(tmp_path):
    with pytest.raises(DatasetError, match="unlabeled"):
        ImageFolderDataset.from_manifest(pd.DataFrame({"file": ["a.png"], "label_index": [-1]}))
    with pytest.raises(ConfigError, match="label_index"):
        ImageFolderDataset.from_manifest(pd.DataFrame({"file": ["a.png"]}))


# ---------------------------------------------------------------------------------- recordio

@pytest.mark.parametrize("layout", ["insightface_legacy", "insightface_recbuilder"])
def test_recordio_golden_layouts_read_labels_without_decoding(golden, layout, monkeypatch):
    expected = json.loads((golden / "recordio" / "expected.json").read_text())
    if layout == "insightface_legacy":
        want = [int(image["label"]) for image in expected[layout]["images"]]
    else:
        counts = json.loads((golden / "recordio" / layout / "expected.json").read_text())
        want = np.repeat(np.arange(3), counts["images_per_identity"]).tolist()

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded while building the dataset")

    monkeypatch.setattr(recordio_module, "decode_bytes", no_decoding)
    dataset = RecordIODataset(golden / "recordio" / layout, TO_UINT8)
    assert dataset.labels.tolist() == want and dataset.num_classes == max(want) + 1
    sampler = RandomIdentitySampler(dataset.labels, num_instances=2, batch_size=4)
    assert len(list(sampler)) == len(sampler)
    monkeypatch.undo()
    labels = []
    for images, batch_labels in loader(dataset):
        assert images.shape[1:] == (3, 112, 112) and images.dtype == torch.uint8
        labels += batch_labels.tolist()
    assert labels == want


def test_recordio_accepts_a_handle_and_checks_it(tmp_path):
    items = [(png((i, 0, 0)), f"id{i % 3}") for i in range(7)]
    summary = write_insightface_legacy(tmp_path / "rec", items, image_size=(6, 8))
    handle = RecordIOHandle(rec_path=str(tmp_path / "rec" / "train.rec"),
                            idx_path=str(tmp_path / "rec" / "train.idx"),
                            property_path=str(tmp_path / "rec" / "property"),
                            num_images=summary.num_images, num_classes=3, image_size=(6, 8),
                            rec_sha256=summary.rec_sha256)
    dataset = RecordIODataset(handle, TO_UINT8, swap_color_channel=True)
    got = {}
    for images, labels in loader(dataset):
        for color, label in zip(colors_of(images), labels.tolist()):
            got[color[2]] = label                         # swapped: red is now last
    assert got == {i: i % 3 for i in range(7)}
    stale = RecordIOHandle(**{**handle.__dict__, "num_images": 8})
    with pytest.raises(FormatError, match="recorded 8 images"):
        RecordIODataset(stale)


# ------------------------------------------------------------------------------- HDF5 store

@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_h5_store_under_fork_and_spawn_workers(golden, context):
    path = golden / "hdf5" / "sequences.h5"
    expected = json.loads((golden / "hdf5" / "expected.json").read_text())["sequences.h5"]
    dataset = H5StoreDataset(H5StoreHandle(str(path), 20, 4, 2), T.Compose([T.ToTensor()]))
    assert dataset.classes == ["bottle", "chair"]
    names = [m["name"] for frames in expected["sequences"].values() for m in frames]
    assert dataset.index.keys == names
    dataset[0]                        # the parent opens a handle: forked workers must not use it
    labels = []
    for images, batch_labels in loader(dataset, batch_size=8, multiprocessing_context=context):
        assert images.dtype == torch.float32 and images.shape[1] == 3
        labels += batch_labels.tolist()
    assert labels == [0] * 10 + [1] * 10 == dataset.labels.tolist()


# --------------------------------------------------------------------------- temporal pairs

def frame_color(sequence: int, frame: int) -> tuple[int, int, int]:
    return (sequence * 50, frame, 200)


SEQUENCES = {                           # (class, object) -> frame numbers
    ("bird", "a"): [0, 1, 2, 3, 4, 5, 6, 7],
    ("bird", "b"): [3],                 # one frame: pairs with itself
    ("cup", "c"): [0, 10, 11],          # frame 0 has no partner within 2 frames: nearest is 10
    ("cup", "d"): [2, 4, 9],            # 9 is alone: nearest is 4
}
FALLBACK_KEYS = {"bird/b_003.png", "cup/c_000.png", "cup/d_009.png"}


def write_sequences(path: Path) -> None:
    items = [H5Item(cls, obj, frame, png(frame_color(s, frame)), ext="png")
             for s, ((cls, obj), frames) in enumerate(SEQUENCES.items()) for frame in frames]
    write_h5_store(path, items)


def test_temporal_pairs_respect_the_window_and_count_fallbacks(tmp_path):
    write_sequences(tmp_path / "seq.h5")
    dataset = TemporalPairDataset(tmp_path / "seq.h5", window=2, transform=TO_UINT8)
    assert type(dataset[0]) is PairItem and dataset[0].label == dataset[0][2]
    keys = dataset.reader.index.keys
    assert {keys[i] for i in dataset.fallback_indices} == FALLBACK_KEYS
    assert dataset.fallback_count == 3 and dataset.single_frame_sequences == 1
    nearest = {"bird/b_003.png": 3, "cup/c_000.png": 10, "cup/d_009.png": 4}
    flags = 0
    for epoch in range(3):
        for view_a, view_b, labels, fallback in loader(dataset, batch_size=5, shuffle=True):
            for a, b, label, flag in zip(colors_of(view_a), colors_of(view_b), labels.tolist(),
                                         fallback.tolist()):
                assert a[0] == b[0]                                     # same sequence
                assert label == (0 if a[0] < 100 else 1)
                key = f"{['bird/a', 'bird/b', 'cup/c', 'cup/d'][a[0] // 50]}_{a[1]:03d}.png"
                assert flag == (key in FALLBACK_KEYS)
                if flag:
                    assert b[1] == nearest[key]
                else:
                    assert a[1] != b[1] and abs(a[1] - b[1]) <= 2
                flags += flag
    assert flags == 3 * dataset.fallback_count                          # once per epoch each


def test_temporal_pairs_draw_every_partner_in_the_window(golden):
    dataset = TemporalPairDataset(golden / "hdf5" / "sequences.h5", window=1, seed=3)
    assert dataset.fallback_count == 0
    partners = Counter(dataset.partner(2)[0] for _ in range(200))     # frame 2 of 0..4
    assert set(partners) == {1, 3}
    assert {dataset.partner(0)[0] for _ in range(20)} == {1}            # first frame: only 1
    with pytest.raises(ConfigError, match="window"):
        TemporalPairDataset(golden / "hdf5" / "sequences.h5", window=0)


# ------------------------------------------------------------------------------------ hybrid

def hybrid_transform() -> T.Compose:
    return T.Compose([T.Resize((16, 16)), T.ToTensor()])


def test_hybrid_placeholders_are_flagged_and_summed_across_workers(golden):
    root = golden / "hdf5"
    expected = json.loads((root / "expected.json").read_text())["hybrid_labels.h5"]
    dataset = HybridDataset(root / "hybrid_labels.h5", root / "hybrid_images",
                            label_key="labels/gender", transform=hybrid_transform(),
                            allow_missing=True, image_size=(64, 64))
    assert len(dataset) == 20 and dataset.excluded == 0
    assert type(dataset[0]) is FlaggedItem and mask_of(dataset[0]) is None   # a flag, no mask
    flagged, total = [], 0
    for images, labels, missing in loader(dataset):
        assert images.shape[1:] == (3, 16, 16)
        flagged += [bool(m) and float(image.abs().sum()) == 0.0
                    for image, m in zip(images, missing.tolist())]
        total += int(missing.sum())
    ids = [pid for pid, f in zip(expected["image_ids"], flagged) if f]
    assert total == 3 and sorted(ids) == sorted(expected["missing"] + expected["corrupt"])
    assert dataset.policy.total() == 0            # the workers counted, not this process
    assert dataset.missing_summary(total).startswith("3 placeholder image(s)")


def test_hybrid_counts_in_process_and_excludes_null_labels(golden):
    root = golden / "hdf5"
    logged = []
    dataset = HybridDataset(root / "hybrid_labels.h5", root / "hybrid_images",
                            label_key="labels/age", transform=hybrid_transform(),
                            allow_missing=True, image_size=(64, 64))
    dataset.policy.log = logged.append
    assert len(dataset) == 16 and dataset.excluded == 4          # 4 null ages
    assert dataset.labels.dtype == np.int64 and 20 not in dataset.labels.tolist()
    flags = [dataset[i][-1] for i in range(len(dataset))]
    assert sum(flags) == dataset.policy.total() == 3
    assert len(logged) == 1                                      # rate-limited
    assert "1003_0.jpg" in dataset.missing_summary()


def test_hybrid_placeholder_carries_a_mask_when_the_transform_yields_one(golden):
    root = golden / "hdf5"
    dataset = HybridDataset(root / "hybrid_labels.h5", root / "hybrid_images",
                            label_key="labels/gender", allow_missing=True, image_size=(80, 96),
                            transform=T.Compose([SyntheticOcclusionMask(prob=1.0, seed=0),
                                                 ToTensorWithMask()]))
    real, placeholder = dataset[0], dataset[3]                    # 1003_0 is missing
    assert len(real) == len(placeholder) == 4 and placeholder[-1] is True
    assert placeholder[0].shape == real[0].shape and placeholder[2].shape == real[2].shape


def test_hybrid_text_labels_and_escaping_ids(tmp_path):
    (tmp_path / "images").mkdir()
    for name in "abc":
        (tmp_path / "images" / f"{name}.png").write_bytes(png((ord(name), 0, 0)))
    with h5py.File(tmp_path / "labels.h5", "w") as h5:
        h5["image_ids"] = np.array([b"a", b"b", b"c"])
        h5["species"] = np.array([b"dog", b"cat", b"dog"])
    dataset = HybridDataset(tmp_path / "labels.h5", tmp_path / "images", label_key="species",
                            extension=".png", transform=TO_UINT8)
    assert dataset.classes == ["cat", "dog"] and dataset.labels.tolist() == [1, 0, 1]
    image, label, missing = dataset[1]
    assert image[0, 0, 0] == ord("b") and label == 0 and missing is False
    with h5py.File(tmp_path / "labels.h5", "a") as h5:
        h5["escaping"] = np.array([b"a", b"../images/b", b"c"])
    with pytest.raises(PathEscapeError, match="../images/b"):
        HybridDataset(tmp_path / "labels.h5", tmp_path / "images", ids_key="escaping",
                      label_key="species", extension=".png")


def test_hybrid_without_allow_missing_names_the_file(golden):
    root = golden / "hdf5"
    dataset = HybridDataset(root / "hybrid_labels.h5", root / "hybrid_images",
                            label_key="labels/gender", transform=hybrid_transform())
    with pytest.raises(ImageError, match="1003_0.jpg.*allow_missing"):
        dataset[3]
    with pytest.raises(ConfigError, match="image_size"):
        HybridDataset(root / "hybrid_labels.h5", root / "hybrid_images",
                      label_key="labels/gender", allow_missing=True)


# ------------------------------------------------------------------------ validation memfile

def test_validation_memfile_items_are_copies_from_a_read_only_map(tmp_path):
    sets = {"lfw": ([png((i * 20, 0, 0)) for i in range(4)], [True, False]),
            "mine": ([png((0, i * 20, 0)) for i in range(6)], [False, True, True])}
    summary = build_validation_memfile(tmp_path / "val.mem", sets, image_size=8, dtype="uint8")
    handle = MemfileHandle(path=str(tmp_path / "val.mem"), shape=summary.images.shape,
                           dtype="uint8", num_pairs=5, sets={"lfw": 2, "mine": 5})
    dataset = ValidationMemfileDataset(handle)
    assert len(pickle.dumps(dataset)) < 4096 and dataset.num_pairs == 5
    assert type(dataset[3]) is PairImageItem and dataset[3].dataname == dataset[3][2]
    images, issame, dataname, index = (torch.cat(part) for part in
                                       zip(*loader(dataset, batch_size=3)))
    assert index.tolist() == list(range(10))
    assert issame.tolist() == [True] * 2 + [False] * 2 + [False] * 2 + [True] * 4
    assert dataname.tolist() == [2] * 4 + [5] * 6
    assert torch.equal(images, torch.from_numpy(np.array(dataset.images)))
    item = dataset[0][0]
    item += 1                                                    # a copy: the file is unchanged
    assert dataset.images[0].max() == 0 and not dataset.images.flags.writeable
    with pytest.raises(FormatError, match="shape"):
        ValidationMemfileDataset(MemfileHandle(**{**handle.__dict__, "shape": (9, 3, 8, 8)}))


# --------------------------------------------------------------------------------- tfrecord

def write_labelled_shards(out_dir: Path, count: int, shard_bytes: int) -> list[Path]:
    """`count` Examples labelled 0..count-1 in order, each image's red channel = its label."""
    summary = write_shards(list(range(count)),
                           lambda i: make_image_example(png((i, 1, 2)), label=i, height=6,
                                                        width=8, format="png"),
                           out_dir, "train", shard_bytes, seed=None)
    return summary.paths


def stream_labels(stream: TFRecordStream, num_workers: int = 2) -> list[int]:
    labels = []
    for images, batch_labels in DataLoader(stream, batch_size=4, num_workers=num_workers):
        assert [c[0] for c in colors_of(images)] == batch_labels.tolist()
        labels += batch_labels.tolist()
    return labels


def test_tfrecord_stream_yields_every_record_once_across_workers_and_ranks(tmp_path):
    paths = write_labelled_shards(tmp_path, 30, shard_bytes=1200)
    assert len(paths) >= 4                   # 2 ranks x 2 workers: whole shards for each
    handle = TFRecordShardsHandle(out_dir=str(tmp_path), shards={"train": tuple(map(str, paths))},
                                  records={"train": 30}, num_classes=30)
    in_two_shards = len(stream_labels(TFRecordStream(paths[:2], TO_UINT8), num_workers=0))
    for shards, records in ((handle, 30), (paths[:2], in_two_shards)):   # 2 shards: striding
        union = Counter()
        for rank in range(2):
            stream = TFRecordStream(shards, TO_UINT8, rank=rank, world_size=2,
                                    shuffle_buffer=5, seed=7)
            mine = stream_labels(stream)
            assert mine                      # no rank is left without work
            union.update(mine)
        assert union == Counter(range(records))


def test_tfrecord_stream_shuffles_per_epoch_reproducibly(tmp_path):
    paths = write_labelled_shards(tmp_path, 24, shard_bytes=1 << 20)
    assert len(paths) == 1
    stream = TFRecordStream(paths, TO_UINT8, shuffle_buffer=8, seed=1)
    first = stream_labels(stream, num_workers=0)
    assert first == stream_labels(stream, num_workers=0) and sorted(first) == list(range(24))
    stream.set_epoch(1)
    second = stream_labels(stream, num_workers=0)
    assert second != first and sorted(second) == list(range(24))
    assert stream_labels(TFRecordStream(paths, TO_UINT8), num_workers=0) == list(range(24))
    items = list(shuffle_buffered(range(50), 7, np.random.default_rng(0)))
    assert sorted(items) == list(range(50)) and items != list(range(50))


def test_tfrecord_stream_reads_the_golden_examples(golden):
    path = golden / "tfrecord" / "examples.tfrecord"
    expected = json.loads((golden / "tfrecord" / "expected.json").read_text())["examples.tfrecord"]
    labels = []
    for images, batch_labels in loader(TFRecordStream(path, TO_UINT8)):
        assert images.shape[1:] == (3, 48, 64)
        labels += batch_labels.tolist()
    assert sorted(labels) == sorted(e["label"] for e in expected)


def test_tfrecord_stream_names_a_record_without_label(tmp_path):
    with ShardWriter(tmp_path, "train", 1 << 20) as writer:
        writer.write(make_image_example(png((1, 1, 1)), label=0, height=6, width=8))
        writer.write(encode_example({"image/encoded": png((1, 1, 1))}))
    stream = TFRecordStream(tmp_path, TO_UINT8)
    with pytest.raises(FormatError, match="at byte [1-9].*image/class/label"):
        list(stream)
