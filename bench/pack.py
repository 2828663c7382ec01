"""Benchmark: pass-through packing (RecordIO, TFRecord shards) against a plain sequential copy.

Inputs (cached under /tmp/imageds-bench/): 20,000 photo-like 112x112 JPEGs (200 distinct
images, each stored 100 times with a different JPEG comment, so every file differs) and 200
photo-like 1920x1280 JPEGs. For each set, one run times side by side:

- copy:            for each file, open(path, "rb").read() it, append its bytes to one output
                   file (plain buffered write, 256 KiB buffer); fsync. The issue's baseline.
- copy-fastread:   the copy, reading each file with ml.file_bytes.read_file_bytes (os.open /
                   os.read, the reader every packer uses) instead of open().read(): how much
                   of the packers' figures comes from reading faster than the plain copy.
- recordio:        for each file, read_file_bytes, RecordIOWriter.write_packed(key, IRHeader
                   with the label, bytes): .rec + .idx, fsynced and renamed by close().
- copy+sha256:     the copy, also hashing the bytes (the ceiling for checksummed packing).
- recordio+sha256: recordio with sha256=True, as write_insightface_legacy packs.
- tfrecord:        for each file, read_file_bytes, make_image_example_parts (standard image
                   keys), write_shards: framing CRCs, DALI .idx, 64 MiB shards, seed-0 shuffle;
                   sha256=False, as pack_tfrecords writes (the packing asset hashes the shards).
- tfrecord+sha256: the same, also computing each shard's sha256 (write_shards' default).
- tfrecord-in-order: tfrecord without the shuffle: the files are read in the copy's order, so
                   the difference to tfrecord is the cost of reading them in random order.

Every side reads the same files from a warm page cache (one untimed read pass first) and ends
with an fsync. The sides run in turn, their order reversed every round; each side's figure is its
best round (wall time; CPU time of all this process's threads alongside). Then random reads
through the indexes: RecordIOReader.read(key) and IndexedTFRecord[i] (CRC checked) at random
records of the small set.

Run from the repo root: .venv/bin/python bench/pack.py
The last line printed is one JSON object with the figures the issue names.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.synthetic_photos import photo_like, write_photo_jpegs  # noqa: E402
from ml.formats.example_proto import (make_image_example_parts,  # noqa: E402
                                      parse_image_example)
from ml.formats.recordio import IRHeader, RecordIOReader, RecordIOWriter  # noqa: E402
from ml.file_bytes import read_file_bytes  # noqa: E402
from ml.formats.tfrecord import IndexedTFRecord, write_shards  # noqa: E402

BENCH_ROOT = Path("/tmp/imageds-bench")
SMALL_DIR = BENCH_ROOT / "faces_112x112"
LARGE_DIR = BENCH_ROOT / "photos_1920x1280"
SMALL_DISTINCT, SMALL_COPIES, SMALL_SIDE = 200, 100, 112
LARGE_COUNT = 200
ROUNDS = {"small": 7, "large": 15}   # a large-set round is ~5x shorter, so more of them
SHARD_BYTES = 64 << 20
RANDOM_READS = 100_000
COPY_BUFFER_BYTES = 256 << 10   # the default 8 KiB made the copy of small files ~20% slower


@dataclass(frozen=True)
class InputSet:
    """One set of input files to pack: their paths, labels, pixel size and total bytes."""

    name: str
    paths: list[str]
    labels: list[int]
    width: int
    height: int
    total_bytes: int
    file_names: list[str]      # the name and class text of each file, which a split
    class_texts: list[str]     # manifest holds beside its path


def input_set(name: str, paths: list[str], labels: list[int], width: int,
              height: int) -> InputSet:
    return InputSet(name, paths, labels, width, height, sum(os.path.getsize(p) for p in paths),
                    [os.path.basename(p) for p in paths], [f"class_{label}" for label in labels])


# ------------------------------------------------------------------------------------ inputs

def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """`jpeg` with a COM segment holding `text` right after SOI (a valid, different file)."""
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def small_jpegs() -> list[Path]:
    """20,000 112x112 JPEGs: SMALL_DISTINCT encoded images x SMALL_COPIES comment variants."""
    done_marker = SMALL_DIR / ".complete"
    paths = [SMALL_DIR / f"face_{i:05d}.jpg" for i in range(SMALL_DISTINCT * SMALL_COPIES)]
    if done_marker.exists():
        return paths
    SMALL_DIR.mkdir(parents=True, exist_ok=True)
    for image_index in range(SMALL_DISTINCT):
        buffer = io.BytesIO()
        photo_like(SMALL_SIDE, SMALL_SIDE, seed=10_000 + image_index).save(buffer, "JPEG",
                                                                           quality=90)
        encoded = buffer.getvalue()
        for copy in range(SMALL_COPIES):
            number = image_index * SMALL_COPIES + copy
            paths[number].write_bytes(with_comment(encoded, b"copy %05d" % number))
    done_marker.touch()
    return paths


def input_sets() -> list[InputSet]:
    small = [str(p) for p in small_jpegs()]
    large = [str(p) for p in write_photo_jpegs(LARGE_DIR, LARGE_COUNT, 1920, 1280)]
    return [input_set("small", small, [i // SMALL_COPIES for i in range(len(small))],
                      SMALL_SIDE, SMALL_SIDE),
            input_set("large", large, [i % 10 for i in range(len(large))], 1920, 1280)]


def warm_page_cache(inputs: InputSet) -> None:
    """One untimed read of every input, so every side reads from the page cache."""
    for path in inputs.paths:
        read_file(path)


# ------------------------------------------------------------------------------------ packers

def read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def plain_copy(inputs: InputSet, out_dir: Path, sha256: bool = False,
               read: Callable[[str], bytes] = read_file) -> None:
    """Baseline: every file's bytes appended to one buffered file (and hashed), then fsync."""
    hasher = hashlib.sha256() if sha256 else None
    with open(out_dir / "all.bin", "wb", buffering=COPY_BUFFER_BYTES) as out:
        for path in inputs.paths:
            data = read(path)
            out.write(data)
            if hasher is not None:
                hasher.update(data)
        out.flush()
        os.fsync(out.fileno())


def pack_recordio(inputs: InputSet, out_dir: Path, sha256: bool = False) -> None:
    """Ours: one RecordIO record (IRHeader with the label + the JPEG bytes) per file, + .idx."""
    with RecordIOWriter(out_dir / "train.rec", out_dir / "train.idx", sha256=sha256) as writer:
        for key, (path, label) in enumerate(zip(inputs.paths, inputs.labels)):
            writer.write_packed(key, IRHeader(0, float(label), key, 0), read_file_bytes(path))


def pack_tfrecord(inputs: InputSet, out_dir: Path, sha256: bool = False,
                  seed: int | None = 0) -> None:
    """Ours: one tf.train.Example (standard image keys) per file, in 64 MiB shards + DALI .idx
    (and each shard's sha256 when asked), files shuffled with `seed` (None: in order)."""
    paths, labels, texts, names = (inputs.paths, inputs.labels, inputs.class_texts,
                                   inputs.file_names)
    height, width = inputs.height, inputs.width

    def to_record(position: int) -> list[bytes]:
        return make_image_example_parts(read_file_bytes(paths[position]), label=labels[position],
                                        height=height, width=width, text=texts[position],
                                        format="jpeg", filename=names[position])

    write_shards(range(len(inputs.paths)), to_record, out_dir, "train", SHARD_BYTES,
                 seed=seed, write_index=True, sha256=sha256)


PACKERS: dict[str, Callable[[InputSet, Path], None]] = {
    "copy": plain_copy,
    "copy-fastread": functools.partial(plain_copy, read=read_file_bytes),
    "recordio": pack_recordio,
    "copy+sha256": functools.partial(plain_copy, sha256=True),
    "recordio+sha256": functools.partial(pack_recordio, sha256=True),
    "tfrecord": pack_tfrecord,
    "tfrecord+sha256": functools.partial(pack_tfrecord, sha256=True),
    "tfrecord-in-order": functools.partial(pack_tfrecord, seed=None),
}
SIDES = tuple(PACKERS)
HASHING = ("recordio+sha256", "tfrecord+sha256")   # sides that also hash their output


@dataclass
class Timing:
    """Best wall and CPU seconds (all threads of this process) of one side over the rounds."""

    wall: float = float("inf")
    cpu: float = float("inf")


def time_rounds(inputs: InputSet, work: Path) -> dict[str, Timing]:
    """Each side's best of the set's ROUNDS; the order of the sides reverses every round."""
    best = {side: Timing() for side in SIDES}
    for round_number in range(ROUNDS[inputs.name]):
        order = SIDES if round_number % 2 == 0 else SIDES[::-1]
        for side in order:
            out_dir = work / f"{inputs.name}-{side}"
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()
            wall, cpu = time.perf_counter(), time.process_time()
            PACKERS[side](inputs, out_dir)
            best[side].wall = min(best[side].wall, time.perf_counter() - wall)
            best[side].cpu = min(best[side].cpu, time.process_time() - cpu)
    return best


# ------------------------------------------------------------------------------------ reads

def recordio_random_reads(rec_dir: Path, count: int, keys: np.ndarray) -> float:
    """Records per second of RecordIOReader.read at random keys through the .idx."""
    with RecordIOReader(rec_dir / "train.rec", rec_dir / "train.idx") as reader:
        read = reader.read
        wanted = keys.tolist()
        start = time.perf_counter()
        total = sum(len(read(key)) for key in wanted)
        elapsed = time.perf_counter() - start
    if total == 0 or len(reader) != count:
        raise SystemExit(f"{rec_dir / 'train.rec'}: expected {count} records")
    return len(wanted) / elapsed


def tfrecord_random_reads(shard_dir: Path, picks: np.ndarray) -> float:
    """Records per second of IndexedTFRecord[i] (CRC checked) at random records of the shards."""
    shards = [IndexedTFRecord(p) for p in sorted(shard_dir.glob("train-*.tfrecord"))]
    starts = np.cumsum([0] + [len(s) for s in shards])
    which = np.searchsorted(starts, picks, side="right") - 1
    wanted = list(zip(which.tolist(), (picks - starts[which]).tolist()))
    start = time.perf_counter()
    total = sum(len(shards[s][i]) for s, i in wanted)
    elapsed = time.perf_counter() - start
    for shard in shards:
        shard.close()
    if total == 0:
        raise SystemExit(f"{shard_dir}: the shards read back empty")
    return len(wanted) / elapsed


def check_round_trip(inputs: InputSet, work: Path, sample: np.ndarray) -> None:
    """The timed outputs hold what was packed: RecordIO records and TFRecord Examples of
    `sample` files equal their source bytes, label and name (raises SystemExit if not)."""
    with RecordIOReader(work / f"{inputs.name}-recordio" / "train.rec") as reader:
        for key in sample.tolist():
            header, payload = reader.read_unpacked(key)
            if payload != read_file(inputs.paths[key]) or header.label != inputs.labels[key]:
                raise SystemExit(f"RecordIO record {key} does not match {inputs.paths[key]}")
    by_name = {os.path.basename(p): (p, label) for p, label in zip(inputs.paths, inputs.labels)}
    for shard_path in sorted((work / f"{inputs.name}-tfrecord").glob("train-*.tfrecord")):
        with IndexedTFRecord(shard_path) as shard:
            for i in range(0, len(shard), max(1, len(shard) // 50)):
                example = parse_image_example(shard[i])
                path, label = by_name[example.filename]
                if example.encoded != read_file(path) or example.label != label:
                    raise SystemExit(f"TFRecord {shard_path.name}[{i}] does not match {path}")


# ------------------------------------------------------------------------------------ main

def speed_ratio(best: dict[str, Timing], side: str, baseline: str) -> float:
    """Throughput of `side` over that of `baseline` (same bytes, so a ratio of wall times)."""
    return best[baseline].wall / best[side].wall


def report_set(inputs: InputSet, best: dict[str, Timing]) -> None:
    """Print each side's MB/s, records/s and CPU seconds, and its throughput against the
    plain copy, the copy with the packers' reader and (for a side that hashes) the copy that
    hashes too."""
    megabytes = inputs.total_bytes / 1e6
    print(f"\n{inputs.name}: {len(inputs.paths)} JPEGs of {inputs.width}x{inputs.height}, "
          f"{megabytes:.1f} MB (mean {inputs.total_bytes / len(inputs.paths) / 1e3:.1f} kB), "
          f"best of {ROUNDS[inputs.name]}")
    print(f"  {'side':16s} {'wall s':>7s} {'MB/s':>8s} {'records/s':>10s} {'CPU s':>7s}  "
          "vs copy  vs copy-fastread  vs copy+sha256")
    for side in SIDES:
        timing = best[side]
        hashed = f"{speed_ratio(best, side, 'copy+sha256'):9.2f}x" if side in HASHING else ""
        print(f"  {side:16s} {timing.wall:7.3f} {megabytes / timing.wall:8.1f} "
              f"{len(inputs.paths) / timing.wall:10.0f} {timing.cpu:7.3f} "
              f"{speed_ratio(best, side, 'copy'):7.2f}x "
              f"{speed_ratio(best, side, 'copy-fastread'):10.2f}x      {hashed}")


def main() -> None:
    bench_start = time.perf_counter()
    sets = input_sets()
    best: dict[str, dict[str, Timing]] = {}
    with tempfile.TemporaryDirectory(prefix="pack-bench-", dir=BENCH_ROOT) as tmp:
        work = Path(tmp)
        for inputs in sets:
            warm_page_cache(inputs)
            best[inputs.name] = time_rounds(inputs, work)
            report_set(inputs, best[inputs.name])
            check_round_trip(inputs, work, np.arange(0, len(inputs.paths), 97))
        small = sets[0]
        picks = np.random.default_rng(0).integers(0, len(small.paths), RANDOM_READS)
        rec_rate = recordio_random_reads(work / "small-recordio", len(small.paths), picks)
        tfr_rate = tfrecord_random_reads(work / "small-tfrecord", picks)
    print(f"\nrandom reads of {RANDOM_READS} small records through the index: "
          f"RecordIO {rec_rate:,.0f} records/s, TFRecord (CRC checked) {tfr_rate:,.0f} records/s")
    print("targets: packing >= 0.80x copy (small and large, both formats); >= 50,000 records/s "
          "read back. Only the +sha256 sides hash their output (compare them with copy+sha256). "
          "The packers read files as copy-fastread does (compare them with it too)")
    print(f"bench wall time {time.perf_counter() - bench_start:.0f} s")
    figures = {f"{fmt}_{name}_vs_copy": round(speed_ratio(best[name], fmt, "copy"), 3)
               for fmt in ("recordio", "tfrecord") for name in ("small", "large")}
    figures["read_records_per_s"] = round(rec_rate)
    figures["tfrecord_read_records_per_s"] = round(tfr_rate)
    for fmt in ("recordio", "tfrecord"):
        for name in ("small", "large"):
            figures[f"{fmt}_{name}_vs_copy_fastread"] = round(
                speed_ratio(best[name], fmt, "copy-fastread"), 3)
    for name in ("small", "large"):
        figures[f"tfrecord_in_order_{name}_vs_copy"] = round(
            speed_ratio(best[name], "tfrecord-in-order", "copy"), 3)
    for side in HASHING:
        for name in ("small", "large"):
            key = f"{side.replace('+', '_')}_{name}_vs_copy_sha256"
            figures[key] = round(speed_ratio(best[name], side, "copy+sha256"), 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
