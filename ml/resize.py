"""stage_resize: turn every source image into a correct-RGB file of one size, incrementally, on
every core. Seed 004's `stage_resize.py` (stretch, full decode, one process, in place) grown up.

- Three geometries (ResizeSpec.mode): `stretch` to exactly WxH (seed 004), `letterbox` (keep the
  aspect ratio, pad with `fill`, centred: seed 003's padding) and `shorter_side_crop` (scale the
  shorter side to fit, centre-crop the rest).
- Speed: a JPEG is decoded in the DCT domain at the smallest 1/1, 1/2, 1/4 or 1/8 scale that is
  still at least the size the geometry needs (Pillow's draft), then resampled with LANCZOS from
  the kept region; a ProcessPoolExecutor spreads chunks of items over every core.
- Incremental: `out_dir/.resize_manifest/` (ml/resize_manifest.py) remembers, per sample,
  the source signature (size, mtime_ns, HDF5 member) and the spec fingerprint; the plan is
  made as columns, so an unchanged sample costs a stat of its source, its share of a listing
  of the output folders and no Python of its own, and a checkpoint writes only what changed.
  Outputs that the current item list no longer produces are removed (they are our artifacts).
- Safety: sources are only read (HDF5 containers opened read-only); an output folder that holds a
  source, or sits in or equals a source folder, is refused; every output is written atomically.
- Seed 004's safe dimensions: a network that halves the image `pool_depth` times needs sides
  divisible by 2**pool_depth (`check_safe_dimensions`, `round_to_safe`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Iterable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image
from pydantic import Field

from ml.atomic import run_leaving_no_temps, sync_filesystem, temp_sibling
from ml.columns import text_column
from ml.containers import close_all as close_containers, read_member
from ml.errors import ConfigError, DatasetError, ImageError, PathEscapeError
from ml.imageio import MISSING, UNSUPPORTED, load_rgb, read_header
from ml.options import Bool, Int, Options
from ml.process_pool import in_flight, pool_context
from ml.file_stats import stat_files
from ml.resize_manifest import MANIFEST_NAME, ResizeManifest  # noqa: F401 (named here too)
from ml.safe_paths import is_inside, relative_names
from ml.progress import Progress

# Bump when a change to the pixels produced for the same spec should redo every output.
ALGORITHM_VERSION = 1
MODES = ("stretch", "letterbox", "shorter_side_crop")
FORMATS = {"jpeg": ".jpg", "png": ".png"}
ON_ERROR = ("skip", "error")
RESAMPLE = Image.Resampling.LANCZOS
# Integer pre-reduction (Image.reduce) only where the remaining factor is at least this large;
# 3.0 is indistinguishable from a plain LANCZOS resize (Pillow's documentation).
REDUCING_GAP = 3.0
MAX_SIDE = 65_500                 # the largest side a JPEG can hold
MAX_CHUNK = 8                     # items per pool task: small enough for smooth progress and
CHUNKS_PER_WORKER = 16            # an even finish, large enough that IPC costs little
CHECKPOINT_SECONDS = 60.0         # a long run saves its manifest this often
CHECKPOINT_ROWS = 50_000          # or sooner, when this many rows wait (~35 MB as Python tuples)

RESIZED, UNCHANGED, FAILED = "resized", "unchanged", "failed"
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- public types

Side = Annotated[Int, Field(ge=1, le=MAX_SIDE)]
Channel = Annotated[Int, Field(ge=0, le=255)]


class ResizeSpec(Options):
    """What every output looks like: size, geometry, pad/alpha colour and file format."""

    width: Side = Field(description="Output width in pixels")
    height: Side = Field(description="Output height in pixels")
    mode: Literal[MODES] = Field("letterbox", description="`stretch` to the size (seed 004), `letterbox` (keep the aspect ratio, pad with `fill`; seed 003) or `shorter_side_crop` (scale the shorter side to fit, centre-crop the rest)")
    fill: tuple[Channel, Channel, Channel] = Field((0, 0, 0), description="Pad colour (R, G, B, each 0-255) and the background of transparent images")
    format: Literal[tuple(FORMATS)] = Field("jpeg", description="Output file format: `jpeg` or `png`")
    quality: Annotated[Int, Field(ge=1, le=100)] = Field(95, description="JPEG quality")

    SECTION: ClassVar[str] = "resize"

    def __init__(self, *size: int, **values) -> None:
        """`ResizeSpec(224, 224, mode=...)`: width and height may come first, unnamed."""
        super().__init__(**dict(zip(("width", "height"), size)), **values)

    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]   # see Options

    @property
    def extension(self) -> str:
        return FORMATS[self.format]

    def fingerprint(self) -> str:
        """Stable hash of every field and ALGORITHM_VERSION: equal fingerprints, equal pixels."""
        fields = {name: getattr(self, name) for name in ResizeSpec.model_fields}
        payload = json.dumps({"algorithm": ALGORITHM_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class ResizeOptions(ResizeSpec):
    """The dataset's `resize:` section: the outputs' look (ResizeSpec) and how the step runs."""

    width: Side = Field(224, description="Output width in pixels")
    height: Side = Field(224, description="Output height in pixels")
    pool_depth: Annotated[Int, Field(ge=0, le=16)] = Field(0, description="How many times the model halves the image; the `safe_dimensions` check fails when a side does not divide by 2^pool_depth and names the nearest safe sizes")
    round_to_safe: Bool = Field(False, description="Round width and height to the nearest safe size instead of failing the check")
    workers: Annotated[Int, Field(ge=0)] = Field(0, description="Worker processes (0: every core)")
    on_error: Literal[ON_ERROR] = Field("skip", description="An image that cannot be resized: `skip` it (reported, dropped) or `error` (stop the step)")

    def output_spec(self) -> ResizeSpec:
        """The outputs' ResizeSpec, the size rounded to a safe one when round_to_safe asks."""
        width, height = self.width, self.height
        if self.round_to_safe and self.pool_depth:
            width, height = (round_to_safe(side, self.pool_depth) for side in (width, height))
        return ResizeSpec(width=width, height=height, mode=self.mode, fill=self.fill,
                          format=self.format, quality=self.quality)


@dataclass(frozen=True)
class ResizeItem:
    """One image to resize: a file, or a member (encoded bytes as uint8) of an HDF5 container."""

    sample_id: str
    path: str
    output_name: str             # relative output path without extension, e.g. "id_0001/03"
    member: str = ""

    @property
    def label(self) -> str:
        """How errors name this image."""
        return f"{self.path}:{self.member}" if self.member else self.path


OUTCOME_COLUMNS = ("sample_id", "output", "width", "height", "status", "reason")


@dataclass
class ResizeOutcome:
    """What happened to one item; `output` is the absolute output path ('' when failed)."""

    sample_id: str
    output: str
    width: int
    height: int
    status: str                  # resized | unchanged | failed
    reason: str = ""             # one of ml.imageio.REASONS when failed


@dataclass
class ResizeResult:
    """Every item's outcome (in input order, as a frame with OUTCOME_COLUMNS) and the totals."""

    frame: "pd.DataFrame"
    processed: int               # resized in this run
    unchanged: int               # up to date from an earlier run: no image work
    failed: int
    seconds: float
    bytes_written: int

    @classmethod
    def of(cls, columns: "Columns", status: np.ndarray, reason: np.ndarray, out_dir: Path,
           spec: ResizeSpec, seconds: float, bytes_written: int) -> "ResizeResult":
        ok = status != FAILED
        # large_string, as pandas keeps text: the joined paths need no second copy
        rels = columns["rel"].cast(pa.large_string())
        if not ok.all():                  # failures get no output ('' after the join's null)
            rels = pc.if_else(pa.array(ok), rels, None)
        outputs = pc.binary_join_element_wise(pa.scalar(os.path.join(str(out_dir), ""),
                                                        pa.large_string()), rels,
                                              pa.scalar("", pa.large_string()))
        del rels
        frame = pa.table({
            "sample_id": columns["sample_id"],
            "output": outputs if ok.all() else outputs.fill_null(""),
            "width": np.where(ok, spec.width, 0), "height": np.where(ok, spec.height, 0),
            "status": pa.array(status, pa.large_string()),     # pandas' own text type:
            "reason": pa.array(reason, pa.large_string())}).to_pandas()   # no cast
        counts = {s: int(np.count_nonzero(status == s)) for s in (RESIZED, UNCHANGED, FAILED)}
        return cls(frame, counts[RESIZED], counts[UNCHANGED], counts[FAILED], seconds,
                   bytes_written)

    @property
    def outcomes(self) -> list[ResizeOutcome]:
        """The outcomes one object per item (for a few items; the frame is the columnar form)."""
        return [ResizeOutcome(*row) for row in self.frame.itertuples(index=False, name=None)]


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Geometry:
    """How a source of a given (upright) size becomes the output canvas."""

    box: tuple[float, float, float, float]   # region of the upright source that is kept
    size: tuple[int, int]                    # what that region is resampled to
    offset: tuple[int, int]                  # where the result sits on the WxH canvas
    draft: tuple[int, int]                   # decode at least this large (JPEG DCT scaling)


def plan_geometry(src_width: int, src_height: int, spec: ResizeSpec) -> Geometry:
    """The kept region, its resampled size and position, and the smallest useful decode size."""
    sw, sh, w, h = src_width, src_height, spec.width, spec.height
    whole = (0.0, 0.0, float(sw), float(sh))
    if spec.mode == "stretch":
        return Geometry(whole, (w, h), (0, 0), (w, h))
    if spec.mode == "letterbox":
        scale = min(w / sw, h / sh)
        cw, ch = min(w, max(1, round(sw * scale))), min(h, max(1, round(sh * scale)))
        return Geometry(whole, (cw, ch), ((w - cw) // 2, (h - ch) // 2), (cw, ch))
    scale = max(w / sw, h / sh)                     # shorter_side_crop
    bw, bh = w / scale, h / scale
    x0, y0 = (sw - bw) / 2, (sh - bh) / 2
    draft = (max(1, round(sw * scale)), max(1, round(sh * scale)))
    return Geometry((x0, y0, x0 + bw, y0 + bh), (w, h), (0, 0), draft)


def _draft_factor(full: int, decoded: int) -> float:
    """The DCT scale a draft decode used along one axis (libjpeg rounds the size up)."""
    for factor in (1, 2, 4, 8):
        if -(-full // factor) == decoded:
            return float(factor)
    return full / decoded


def render(img: Image.Image, src_size: tuple[int, int], spec: ResizeSpec) -> Image.Image:
    """The output canvas from an upright RGB image decoded at `src_size` or a draft of it."""
    geo = plan_geometry(*src_size, spec)
    fx = _draft_factor(src_size[0], img.width)
    fy = _draft_factor(src_size[1], img.height)
    x0, y0, x1, y1 = geo.box
    box = (x0 / fx, y0 / fy, x1 / fx, y1 / fy)
    if geo.size == img.size and box == (0, 0, *img.size):
        content = img                                 # the draft decode already is the answer
    else:
        content = img.resize(geo.size, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    if geo.size == (spec.width, spec.height):
        return content
    canvas = Image.new("RGB", (spec.width, spec.height), spec.fill)
    canvas.paste(content, geo.offset)
    return canvas


def encode(img: Image.Image, spec: ResizeSpec) -> bytes:
    """The output file's bytes (no EXIF: orientation is already applied to the pixels)."""
    buf = io.BytesIO()
    if spec.format == "jpeg":
        img.save(buf, "JPEG", quality=spec.quality)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- reading sources

def resize_image(item: ResizeItem, spec: ResizeSpec) -> Image.Image:
    """Decode one item (JPEG draft at the size its geometry needs) and render the output canvas.

    Raises ImageError with a reason from ml.imageio.REASONS when the image cannot be used.
    """
    try:
        source: str | bytes = read_member(item.path, item.member) if item.member else item.path
        header = read_header(source, name=item.label)
        src_size = (header.width, header.height)
        draft = plan_geometry(*src_size, spec).draft
        img = load_rgb(source, name=item.label, draft_size=draft, fill=spec.fill)
    except ImageError:
        raise
    except Exception as exc:  # a hostile file must be classified, not crash the run
        raise ImageError(item.label, UNSUPPORTED, f"{type(exc).__name__}: {exc}") from None
    return render(img, src_size, spec)


# ----------------------------------------------------------------------------- work units

@dataclass(frozen=True)
class _Task:
    index: int                   # position in the caller's item list
    item: ResizeItem
    output: str                  # relative output path with extension


@dataclass
class _Done:
    index: int
    status: str                  # resized | failed
    bytes_written: int = 0
    reason: str = ""
    detail: str = ""


def write_output(path: str, data: bytes) -> None:
    """Write one output through a temporary sibling renamed into place (readers never see half a
    file). No fsync per image (it costs more than the encode): each manifest checkpoint first
    flushes the output folder's filesystem (one syncfs), so an output the manifest records is
    on disk, and one a crash caught before its checkpoint is redone on the next run."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _resize_one(task: _Task, out_dir: str, spec: ResizeSpec) -> _Done:
    try:
        data = encode(resize_image(task.item, spec), spec)
    except ImageError as exc:
        return _Done(task.index, FAILED, reason=exc.reason, detail=exc.detail)
    target = os.path.join(out_dir, task.output)
    try:
        write_output(target, data)
    except OSError as exc:
        raise DatasetError(f"cannot write {target}: {exc.strerror or exc}; check the free space "
                           "and permissions of the output folder") from None
    return _Done(task.index, RESIZED, bytes_written=len(data))


def _resize_chunk(tasks: list[_Task], out_dir: str, spec: ResizeSpec) -> list[_Done]:
    """One pool task: several items, so process start-up and IPC cost little per image."""
    return [_resize_one(t, out_dir, spec) for t in tasks]


def _run_tasks(count: int, batches: Iterable[list[_Task]], out_dir: Path, spec: ResizeSpec,
               workers: int, on_done) -> None:
    """Resize `count` tasks, arriving in batches, in this process (workers == 1) or on a pool;
    call on_done(task, done) per item. Tasks are made as the pool takes them (a bounded number
    in flight), so a million-image first run never holds a million work units."""
    if workers == 1 or count <= 1:
        try:
            for batch in batches:
                for task in batch:
                    on_done(task, _resize_one(task, str(out_dir), spec))
        finally:
            close_containers()
        return
    size = max(1, min(MAX_CHUNK, math.ceil(count / (workers * CHUNKS_PER_WORKER))))
    chunks = (batch[i:i + size] for batch in batches for i in range(0, len(batch), size))
    in_flight_max = workers * CHUNKS_PER_WORKER
    calls = ((chunk, _resize_chunk, (chunk, str(out_dir), spec)) for chunk in chunks)
    with ProcessPoolExecutor(min(workers, math.ceil(count / size)),
                             mp_context=pool_context(["ml.resize"])) as pool:
        try:
            for chunk, future in in_flight(pool, calls, in_flight_max):
                try:
                    done = future.result()
                except BrokenProcessPool:
                    raise DatasetError(
                        f"a resize worker process died (out of memory, or a decoder crashed "
                        f"on a hostile file) while writing to {out_dir}; rerun with "
                        "workers=1 to find the file (finished work is kept)") from None
                for task, d in zip(chunk, done):
                    on_done(task, d)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


# ----------------------------------------------------------------------------- items

ITEM_COLUMNS = ("sample_id", "path", "member", "output_name")


# A name's extension as os.path.splitext sees it (the last '.' of the last component, unless
# only dots come before it there), matched so that the name without it is \1\2.
_EXTENSION = r"(?s)^(.*/)?(\.*[^./][^/]*)\.[^./]*$"


def output_names(names) -> pa.StringArray:
    """Output names mirroring source names (relative, without the extension the output format
    replaces): os.path.splitext(name)[0] of a whole column at once."""
    return pc.replace_substring_regex(text_column(names), _EXTENSION, r"\1\2")


Columns = dict[str, pa.StringArray]   # ITEM_COLUMNS and "rel" (the relative output path)


def item_columns(items: Sequence[ResizeItem] | pd.DataFrame | Columns) -> Columns:
    """The items as Arrow string columns (ITEM_COLUMNS; positions 0..n-1): Arrow columns or a
    frame's columns as they are (no Python object per value), or a list of ResizeItem's
    fields."""
    if isinstance(items, (pd.DataFrame, dict)):
        return {name: text_column(items[name]) for name in ITEM_COLUMNS}
    return {name: text_column([getattr(i, name) for i in items]) for name in ITEM_COLUMNS}


def _item(columns: Columns, index: int) -> ResizeItem:
    return ResizeItem(**{name: columns[name][index].as_py() for name in ITEM_COLUMNS})


def _label(columns: Columns, index: int) -> str:
    return _item(columns, index).label


def _tasks(columns: Columns, positions: np.ndarray) -> list[_Task]:
    """The work units of the items at `positions` (Python objects for these items only)."""
    at = pa.array(positions, pa.int64())
    values = {name: columns[name].take(at).to_pylist() for name in (*ITEM_COLUMNS, "rel")}
    return [_Task(int(index), ResizeItem(sample_id, path, name, member), rel)
            for index, sample_id, path, member, name, rel in zip(
                positions, values["sample_id"], values["path"], values["member"],
                values["output_name"], values["rel"])]


def _remove_output(out_dir: Path, rel: str) -> None:
    """Delete one of our outputs and the folders it leaves empty (never above out_dir)."""
    path = out_dir / rel
    if not is_inside(out_dir.resolve(), path.resolve()):
        return
    try:
        path.unlink()
    except FileNotFoundError:
        return
    parent = path.parent
    while parent != out_dir and is_inside(out_dir, parent):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


# ----------------------------------------------------------------------------- validation

def _first_repeat(column: pa.StringArray) -> tuple[int, int] | None:
    """Positions of the first value that appears twice and of its repeat, or None."""
    if pc.count_distinct(column).as_py() == len(column):
        return None
    repeated = pd.Series(column.to_pandas()).duplicated(keep=False).to_numpy()
    first = np.flatnonzero(repeated)
    value = column[int(first[0])]
    return int(first[0]), int(first[1:][pc.equal(column.take(pa.array(first[1:])), value)
                                        .to_numpy(zero_copy_only=False)][0])


def _output_rels(columns: Columns, extension: str) -> pa.StringArray:
    """Relative output paths, one per item, checked as a column; refuse duplicate ids, names
    that leave the output folder and names that collide."""
    repeat = _first_repeat(columns["sample_id"])
    if repeat:
        raise ConfigError(f"sample id {columns['sample_id'][repeat[0]].as_py()!r} appears twice "
                          "in the resize items")
    names = relative_names(columns["output_name"], "output name")
    rels = pc.binary_join_element_wise(names, extension, "")
    repeat = _first_repeat(rels)
    if repeat:
        raise ConfigError(f"{_label(columns, repeat[0])} and {_label(columns, repeat[1])} would "
                          f"both be resized to {rels[repeat[0]].as_py()} (their names differ only "
                          f"in the extension, which the output format {extension} replaces); "
                          "rename one of the files")
    return rels


def _folders(paths: pa.StringArray) -> list[str]:
    """The distinct folders (with a trailing '/', '' for a bare name) of a column of paths."""
    return pc.unique(pc.replace_substring_regex(paths, "[^/]*$", "")).to_pylist()


def _refuse_source_overlap(paths: pa.StringArray, out_dir: Path) -> None:
    """ConfigError when out_dir equals or sits inside a source folder, or contains a source."""
    out = out_dir.resolve()
    sources = paths.filter(pc.not_equal(paths, ""))
    folders = {os.path.abspath(folder or ".") for folder in _folders(sources)}
    for folder in sorted(folders):
        src = Path(folder).resolve()
        if is_inside(src, out):
            where = "is" if out == src else "is inside"
            raise ConfigError(f"output folder {out_dir} {where} the source folder {folder}; "
                              "choose an output folder outside the sources (they are never written)")
        if is_inside(out, src):
            raise ConfigError(f"output folder {out_dir} contains source images (in {folder}); "
                              "choose an output folder that holds no sources (outputs there are "
                              "replaced and deleted)")


def _refuse_escaping_folders(rels: pa.StringArray, out_dir: Path) -> None:
    """PathEscapeError when a folder under out_dir that outputs go to is a symlink leading out
    of it (writing there could overwrite someone's files, sources included)."""
    out = out_dir.resolve()
    for folder in sorted(set(_folders(rels)) - {""}):
        path = out_dir / folder
        if path.exists() and not is_inside(out, path.resolve()):
            raise PathEscapeError(f"{path} leads outside the output folder {out_dir} (a symlink); "
                                  "remove it so outputs stay inside the output folder")


# ----------------------------------------------------------------------------- stage_resize

ALIGN_SLICE = 65_536        # items compared with the manifest at a time


class _Recorded:
    """The manifest's rows joined to the items on the sample id (one Arrow hash join): each
    column comes back aligned with the items, null (or `missing`) where a sample has no row."""

    def __init__(self, table: pa.Table, sample_ids: pa.StringArray):
        self.table = table
        self.at = pc.index_in(sample_ids, value_set=table["id"].combine_chunks())
        self.known = self.at.is_valid().to_numpy(zero_copy_only=False)

    def _aligned(self, name: str, compute) -> np.ndarray:
        """compute(recorded values, start, stop) over the items a slice at a time (a column
        taken whole would be a copy of the manifest's text)."""
        parts = [compute(self.table[name].take(self.at.slice(start, ALIGN_SLICE)), start,
                         start + ALIGN_SLICE) for start in range(0, len(self.at), ALIGN_SLICE)]
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    def equal(self, name: str, values: pa.StringArray | str) -> np.ndarray:
        """Where the recorded value equals `values` (never where there is no row)."""
        def compute(recorded, start, stop):
            other = values if isinstance(values, str) else values.slice(start, stop - start)
            return pc.equal(recorded, other).fill_null(False).to_numpy(zero_copy_only=False)
        return self._aligned(name, compute)

    def numbers(self, name: str, missing: int = -1) -> np.ndarray:
        return self._aligned(name, lambda recorded, start, stop: recorded.fill_null(missing)
                             .to_numpy(zero_copy_only=False)).astype(np.int64)

    def strings(self, name: str, where: np.ndarray) -> np.ndarray:
        """The recorded text at the positions `where` (a few), '' where none."""
        picked = self.table[name].take(self.at.filter(pa.array(where)))
        return np.asarray(picked.fill_null("").to_pylist(), dtype=object)

    def blank_outputs(self, rows: np.ndarray) -> None:
        """Forget the outputs of the manifest rows `rows` (removed as stale)."""
        output = pc.if_else(pa.array(rows), "", self.table["output"].combine_chunks())
        self.table = self.table.set_column(self.table.schema.get_field_index("output"),
                                           "output", output)


@dataclass
class _Run:
    """Book-keeping of one stage_resize call, as columns over the items (positions 0..n-1)."""

    columns: Columns                     # ITEM_COLUMNS and "rel"
    out_dir: Path
    spec: ResizeSpec
    on_error: str
    progress: Progress | None
    manifest: ResizeManifest
    src_size: np.ndarray                 # -1: the source cannot be stat'ed (no signature)
    src_mtime: np.ndarray
    ours: np.ndarray                     # bool: an earlier run recorded writing this output
    fingerprint: str = ""                # of the spec, computed once per run
    status: np.ndarray = field(init=False)
    reason: np.ndarray = field(init=False)
    bytes_written: int = 0
    unsynced: bool = False               # outputs written since the last checkpoint
    last_save: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.fingerprint = self.spec.fingerprint()
        self.status = np.full(len(self.src_size), "", dtype=object)
        self.reason = np.full(len(self.src_size), "", dtype=object)

    def settle(self, where: np.ndarray, status: str, reason: np.ndarray | str = "") -> None:
        """Outcomes that need no image work, set for a whole mask at once."""
        self.status[where] = status
        self.reason[where] = reason
        if self.progress is not None:
            self.progress.advance(int(np.count_nonzero(where)))

    def fail_settled(self, where: np.ndarray, detail: np.ndarray | str) -> None:
        """Failures known before any image work: older outputs removed, on_error applied."""
        for index in np.flatnonzero(where & self.ours):
            _remove_output(self.out_dir, self.columns["rel"][index].as_py())
        if self.on_error == "error" and where.any():
            index = int(np.flatnonzero(where)[0])
            raise ImageError(_label(self.columns, index), self.reason[index],
                             detail if isinstance(detail, str) else
                             detail[int(np.count_nonzero(where[:index]))])

    def on_done(self, task: _Task, done: _Done) -> None:
        """One item the pool resized (or failed on): recorded, checkpointed now and then."""
        index, rel, item = task.index, task.output, task.item
        ok = done.status != FAILED
        self.status[index], self.reason[index] = done.status, done.reason
        if self.src_size[index] >= 0:
            self.manifest.put([(item.sample_id, item.path, item.member,
                                int(self.src_size[index]), int(self.src_mtime[index]),
                                self.fingerprint, rel if ok else "", done.bytes_written,
                                done.status, done.reason, done.detail)])
        if not ok:
            if self.ours[index]:                          # an older version of this output
                _remove_output(self.out_dir, rel)
            if self.on_error == "error":
                raise ImageError(item.label, done.reason, done.detail)
        self.bytes_written += done.bytes_written
        self.unsynced = self.unsynced or ok
        if self.progress is not None:
            self.progress.advance()
        if (self.manifest.unsaved >= CHECKPOINT_ROWS
                or time.monotonic() - self.last_save >= CHECKPOINT_SECONDS):
            self.save()

    def save(self) -> None:
        """A checkpoint. The outputs are flushed to disk first (one syncfs, not an fsync per
        image), so whatever the manifest records as written survives a power cut."""
        if self.unsynced:
            sync_filesystem(self.out_dir)
            self.unsynced = False
        self.manifest.save()
        self.last_save = time.monotonic()


def _remove_stale(run: _Run, recorded: _Recorded) -> None:
    """Delete outputs recorded earlier that no current item produces, forget the rows of
    samples no longer asked for."""
    table = recorded.table
    output = table["output"]
    stale = pc.and_(pc.not_equal(output, ""),
                    pc.invert(pc.is_in(output, value_set=run.columns["rel"]))
                    ).to_numpy(zero_copy_only=False)
    for rel in output.filter(pa.array(stale)).to_pylist():
        _remove_output(run.out_dir, rel)
    asked = np.zeros(len(table), bool)
    asked[recorded.at.drop_null().to_numpy()] = True
    run.manifest.delete(table["id"].filter(pa.array(~asked)).to_pylist())
    kept = table.filter(pa.array(stale & asked)).to_pydict()
    kept["output"] = [""] * len(kept["output"])
    run.manifest.put(zip(*(kept[name] for name in table.column_names)))
    recorded.blank_outputs(stale)


LIST_OUTPUTS_FROM = 4096    # check this many outputs or more by listing their folders
LISTED_PER_BATCH = 65_536   # names listed before the outputs of those folders are checked


def _existing(out_dir: Path, rels: pa.StringArray) -> np.ndarray:
    """Which of the relative output paths exist: a stat each when they are few or spread one
    or two per folder, else one listing per folder (a tenth of a stat per file), checked a
    batch of folders at a time so memory stays bounded."""
    folder_of = pc.replace_substring_regex(rels, "[^/]*$", "")
    folders = pc.unique(folder_of)
    if len(rels) < LIST_OUTPUTS_FROM or len(folders) * 4 > len(rels):
        sizes, _ = stat_files(pc.binary_join_element_wise(os.path.join(str(out_dir), ""), rels, ""))
        return sizes >= 0
    group = pc.index_in(folder_of, value_set=folders).to_numpy(zero_copy_only=False)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(len(folders) + 1))
    present = np.zeros(len(rels), bool)
    listed: list[pa.Array] = []
    first = 0                                     # the batch's first folder
    for index, folder in enumerate(folders.to_pylist()):
        try:
            names = os.listdir(out_dir / folder if folder else out_dir)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        listed.append(pc.binary_join_element_wise(folder, pa.array(names, pa.string()), ""))
        if sum(map(len, listed)) >= LISTED_PER_BATCH or index == len(folders) - 1:
            at = order[bounds[first]:bounds[index + 1]]
            present[at] = pc.is_in(rels.take(pa.array(at)), value_set=pa.concat_arrays(listed)
                                   ).to_numpy(zero_copy_only=False)
            listed, first = [], index + 1
    return present


def _plan(run: _Run, recorded: _Recorded) -> np.ndarray:
    """Settle what needs no image work (unchanged, remembered or obvious failures), as columns;
    returns the positions that need resizing."""
    columns = run.columns
    no_path = pc.equal(columns["path"], "").to_numpy(zero_copy_only=False)
    current = (recorded.known & (run.src_size >= 0) & ~no_path
               & recorded.equal("src_path", run.columns["path"])
               & recorded.equal("member", run.columns["member"])
               & (recorded.numbers("src_size") == run.src_size)
               & (recorded.numbers("src_mtime_ns") == run.src_mtime)
               & recorded.equal("spec", run.fingerprint))
    failed_before = current & recorded.equal("status", FAILED)
    may_be_unchanged = current & ~failed_before & recorded.equal("output", columns["rel"])
    candidates = np.flatnonzero(may_be_unchanged)
    unchanged = np.zeros(len(no_path), bool)
    unchanged[candidates] = _existing(run.out_dir, columns["rel"].take(pa.array(candidates)))
    run.settle(unchanged, UNCHANGED)
    run.settle(no_path, FAILED, MISSING)
    run.fail_settled(no_path, "no source path")
    if failed_before.any():
        recorded_reason = recorded.strings("reason", failed_before)
        recorded_reason[recorded_reason == ""] = UNSUPPORTED
        run.settle(failed_before, FAILED, recorded_reason)
        run.fail_settled(failed_before, recorded.strings("detail", failed_before))
    return np.flatnonzero(~(no_path | failed_before | unchanged))


def stage_resize(items: Sequence[ResizeItem] | pd.DataFrame | Columns, out_dir: Path,
                 spec: ResizeSpec, *, workers: int | None = None, on_error: str = "skip",
                 progress: Progress | None = None) -> ResizeResult:
    """Resize every item into out_dir/<output_name>.<jpg|png>, redoing only what changed.

    `items` is a list of ResizeItem, or their ITEM_COLUMNS as a frame or as Arrow columns (the
    columnar forms a million samples arrive in). on_error="skip" turns a bad image into a
    failed outcome with ImageError's reason; on_error="error" raises that ImageError (work
    finished so far is kept and remembered). Raises ConfigError for a bad option, an output
    folder that overlaps the sources, or colliding output names; PathEscapeError for an output
    name that leaves out_dir.
    """
    started = time.perf_counter()
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error {on_error!r} is not one of {', '.join(ON_ERROR)}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers {workers!r} must be a whole number >= 1 (or None for every core)")
    out_dir = Path(out_dir).absolute()
    columns = item_columns(items)
    columns["rel"] = _output_rels(columns, spec.extension)
    _refuse_source_overlap(columns["path"], out_dir)
    _refuse_escaping_folders(columns["rel"], out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_leaving_no_temps(out_dir, out_dir / MANIFEST_NAME):   # a killed run's leftovers go
        return _resize_in(columns, out_dir, spec, on_error, workers, progress, started)


def _resize_in(columns: Columns, out_dir: Path, spec: ResizeSpec, on_error: str, workers: int,
               progress: Progress | None, started: float) -> ResizeResult:
    manifest = ResizeManifest(out_dir)
    recorded = _Recorded(manifest.table, columns["sample_id"])
    ours = pc.is_in(columns["rel"], value_set=pc.drop_null(manifest.table["output"])
                    .combine_chunks()).to_numpy(zero_copy_only=False)   # (no copy kept)
    src_size, src_mtime = stat_files(columns["path"])
    run = _Run(columns, out_dir, spec, on_error, progress, manifest, src_size, src_mtime,
               ours=ours)
    try:
        _remove_stale(run, recorded)
        todo = _plan(run, recorded)
        del recorded
        _run_tasks(len(todo), (_tasks(columns, part) for part in _batches(todo)), out_dir, spec,
                   workers, run.on_done)
    finally:
        run.save()
    manifest.finish()
    status, reason, written = run.status, run.reason, run.bytes_written
    del run, manifest                      # the manifest's million rows, before the outcomes
    return ResizeResult.of(columns, status, reason, out_dir, spec,
                           time.perf_counter() - started, written)


def _batches(positions: np.ndarray, size: int = 4096) -> Iterator[np.ndarray]:
    for start in range(0, len(positions), size):
        yield positions[start:start + size]


# ----------------------------------------------------------------------------- safe dimensions

def _check_depth(n: int, pool_depth: int) -> int:
    if pool_depth < 0:
        raise ConfigError(f"pool_depth {pool_depth} must be >= 0 (the number of 2x poolings)")
    if n < 1:
        raise ConfigError(f"image side {n} must be at least 1 pixel")
    return 2 ** pool_depth


def nearest_safe_sizes(n: int, pool_depth: int) -> tuple[int, int]:
    """The multiples of 2**pool_depth just below and just above n (both n when n is safe;
    the lower one is never below 2**pool_depth)."""
    step = _check_depth(n, pool_depth)
    below = max(step, n // step * step)
    above = max(step, -(-n // step) * step)
    return below, above


def round_to_safe(n: int, pool_depth: int) -> int:
    """The safe size nearest to n (a tie goes to the larger one)."""
    below, above = nearest_safe_sizes(n, pool_depth)
    return below if n - below < above - n else above


def check_safe_dimensions(width: int, height: int, pool_depth: int) -> list[str]:
    """[] when both sides divide by 2**pool_depth; otherwise one message per bad side."""
    step = _check_depth(min(width, height), pool_depth)
    problems = []
    for side, value in (("width", width), ("height", height)):
        if value % step:
            below, above = nearest_safe_sizes(value, pool_depth)
            problems.append(f"{side} {value} is not divisible by 2**{pool_depth} = {step}: "
                            f"{pool_depth} poolings would floor an odd size; nearest safe "
                            f"{side}s are {below} and {above}")
    return problems
