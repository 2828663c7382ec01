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
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from ml.atomic import remove_stale_temps_under, sync_filesystem, temp_sibling
from ml.containers import close_all as close_containers, read_member
from ml.errors import ConfigError, DatasetError, ImageError, PathEscapeError
from ml.imageio import MISSING, NOT_AN_IMAGE, UNSUPPORTED, load_rgb, read_header
from ml.process_pool import pool_context
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

RESIZED, UNCHANGED, FAILED = "resized", "unchanged", "failed"
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- public types

@dataclass(frozen=True)
class ResizeSpec:
    """What every output looks like: size, geometry, pad/alpha colour and file format."""

    width: int
    height: int
    mode: str = "letterbox"
    fill: tuple[int, int, int] = (0, 0, 0)
    format: str = "jpeg"
    quality: int = 95

    def __post_init__(self) -> None:
        for side in ("width", "height"):
            value = getattr(self, side)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
                raise ConfigError(f"resize {side} {value!r} must be a whole number of pixels "
                                  f"from 1 to {MAX_SIDE}")
        if self.mode not in MODES:
            raise ConfigError(f"resize mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.format not in FORMATS:
            raise ConfigError(f"resize format {self.format!r} is not one of {', '.join(FORMATS)}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) \
                or not 1 <= self.quality <= 100:
            raise ConfigError(f"resize quality {self.quality!r} must be a whole number from 1 to 100")
        fill = tuple(self.fill)
        if len(fill) != 3 or not all(isinstance(c, int) and not isinstance(c, bool)
                                     and 0 <= c <= 255 for c in fill):
            raise ConfigError(f"resize fill {self.fill!r} must be three whole numbers 0-255 "
                              "(R, G, B)")
        object.__setattr__(self, "fill", fill)

    @property
    def extension(self) -> str:
        return FORMATS[self.format]

    def fingerprint(self) -> str:
        """Stable hash of every field and ALGORITHM_VERSION: equal fingerprints, equal pixels."""
        payload = json.dumps({"algorithm": ALGORITHM_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


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
    def of(cls, sample_ids: "pd.Series", status: np.ndarray, reason: np.ndarray, out_dir: Path,
           rels: np.ndarray, spec: ResizeSpec, seconds: float,
           bytes_written: int) -> "ResizeResult":
        ok = status != FAILED
        prefix = os.path.join(str(out_dir), "")
        frame = pd.DataFrame({
            "sample_id": sample_ids.to_numpy(dtype=object),
            "output": np.where(ok, prefix + rels.astype(object), ""),
            "width": np.where(ok, spec.width, 0), "height": np.where(ok, spec.height, 0),
            "status": status, "reason": reason}, columns=list(OUTCOME_COLUMNS))
        counts = {s: int(np.count_nonzero(status == s)) for s in (RESIZED, UNCHANGED, FAILED)}
        return cls(frame, counts[RESIZED], counts[UNCHANGED], counts[FAILED], seconds,
                   bytes_written)

    def to_frame(self) -> "pd.DataFrame":
        return self.frame

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


def _chunks(tasks: list[_Task], workers: int) -> list[list[_Task]]:
    size = max(1, min(MAX_CHUNK, math.ceil(len(tasks) / (workers * CHUNKS_PER_WORKER))))
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def _run_tasks(tasks: list[_Task], out_dir: Path, spec: ResizeSpec, workers: int, on_done) -> None:
    """Resize `tasks` in this process (workers == 1) or on a pool; call on_done per item."""
    if workers == 1 or len(tasks) <= 1:
        try:
            for task in tasks:
                on_done(_resize_one(task, str(out_dir), spec))
        finally:
            close_containers()
        return
    chunks = _chunks(tasks, workers)
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=pool_context(["ml.resize"])) as pool:
        futures = [pool.submit(_resize_chunk, chunk, str(out_dir), spec) for chunk in chunks]
        try:
            for future in as_completed(futures):
                try:
                    done = future.result()
                except BrokenProcessPool:
                    raise DatasetError(
                        f"a resize worker process died (out of memory, or a decoder crashed on a "
                        f"hostile file) while writing to {out_dir}; rerun with workers=1 to find "
                        "the file (finished work is kept)") from None
                for d in done:
                    on_done(d)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


# ----------------------------------------------------------------------------- items

ITEM_COLUMNS = ("sample_id", "path", "member", "output_name")


# A name's extension as os.path.splitext sees it (the last '.' of the last component, unless
# only dots come before it there), matched so that the name without it is \1\2.
_EXTENSION = r"(?s)^(.*/)?(\.*[^./][^/]*)\.[^./]*$"


def output_names(names: Sequence[str]) -> np.ndarray:
    """Output names mirroring source names (relative, without the extension the output format
    replaces): os.path.splitext(name)[0] of a whole column at once."""
    text = pa.array(np.asarray(names, dtype=object), pa.string())
    return pc.replace_substring_regex(text, _EXTENSION, r"\1\2").to_numpy(zero_copy_only=False)


def items_frame(items: Sequence[ResizeItem] | pd.DataFrame) -> pd.DataFrame:
    """The items as columns (ITEM_COLUMNS, strings, positions 0..n-1): a frame as it is, or a
    list of ResizeItem."""
    if isinstance(items, pd.DataFrame):
        frame = items.loc[:, list(ITEM_COLUMNS)].reset_index(drop=True)
    else:
        frame = pd.DataFrame([(i.sample_id, i.path, i.member, i.output_name) for i in items],
                             columns=list(ITEM_COLUMNS))
    return frame.fillna("").astype(str).astype(object)


Columns = dict[str, np.ndarray]    # ITEM_COLUMNS as object arrays: a row costs no pandas


def _columns(frame: pd.DataFrame) -> Columns:
    return {name: frame[name].to_numpy(dtype=object) for name in ITEM_COLUMNS}


def _item(columns: Columns, index: int) -> ResizeItem:
    return ResizeItem(sample_id=columns["sample_id"][index], path=columns["path"][index],
                      output_name=columns["output_name"][index], member=columns["member"][index])


def _label(columns: Columns, index: int) -> str:
    return _item(columns, index).label


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

def _output_rels(frame: pd.DataFrame, columns: Columns, extension: str) -> np.ndarray:
    """Relative output paths, one per item, checked as a column; refuse duplicate ids, names
    that leave the output folder and names that collide."""
    dup_ids = frame["sample_id"].duplicated()
    if dup_ids.any():
        raise ConfigError(f"sample id {frame['sample_id'][dup_ids].iloc[0]!r} appears twice in "
                          "the resize items")
    rels = relative_names(frame["output_name"].to_numpy(), "output name") + extension
    collide = pd.Series(rels).duplicated(keep=False).to_numpy()
    if collide.any():
        first = np.flatnonzero(collide)
        second = first[1:][rels[first[1:]] == rels[first[0]]][0]
        raise ConfigError(f"{_label(columns, first[0])} and {_label(columns, second)} would "
                          f"both be resized to {rels[first[0]]} (their names differ only in the "
                          f"extension, which the output format {extension} replaces); rename "
                          "one of the files")
    return rels


def _folders(paths: np.ndarray) -> list[str]:
    """The distinct folders (with a trailing '/', '' for a bare name) of a column of paths."""
    text = pc.replace_substring_regex(pa.array(paths, pa.string()), "[^/]*$", "")
    return pc.unique(text).to_pylist()


def _refuse_source_overlap(paths: np.ndarray, out_dir: Path) -> None:
    """ConfigError when out_dir equals or sits inside a source folder, or contains a source."""
    out = out_dir.resolve()
    sources = paths[paths != ""]
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


def _refuse_escaping_folders(rels: np.ndarray, out_dir: Path) -> None:
    """PathEscapeError when a folder under out_dir that outputs go to is a symlink leading out
    of it (writing there could overwrite someone's files, sources included)."""
    out = out_dir.resolve()
    for folder in sorted(set(_folders(rels)) - {""}):
        path = out_dir / folder
        if path.exists() and not is_inside(out, path.resolve()):
            raise PathEscapeError(f"{path} leads outside the output folder {out_dir} (a symlink); "
                                  "remove it so outputs stay inside the output folder")


# ----------------------------------------------------------------------------- stage_resize

class _Recorded:
    """The manifest's rows joined to the items on the sample id (one Arrow hash join): each
    column comes back aligned with the items, null (or `missing`) where a sample has no row."""

    def __init__(self, table: pa.Table, sample_ids: np.ndarray):
        self.table = table
        self.at = pc.index_in(pa.array(sample_ids, pa.string()),
                              value_set=table["id"].combine_chunks())
        self.known = self.at.is_valid().to_numpy(zero_copy_only=False)

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table[name].take(self.at)

    def equal(self, name: str, values: np.ndarray | str) -> np.ndarray:
        """Where the recorded value equals `values` (never where there is no row)."""
        other = values if isinstance(values, str) else pa.array(values, pa.string())
        same = pc.equal(self.column(name), other).fill_null(False)
        return same.to_numpy(zero_copy_only=False)

    def numbers(self, name: str, missing: int = -1) -> np.ndarray:
        return self.column(name).fill_null(missing).to_numpy(zero_copy_only=False)

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

    frame: pd.DataFrame
    columns: Columns
    rels: np.ndarray
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
        self.status = np.full(len(self.frame), "", dtype=object)
        self.reason = np.full(len(self.frame), "", dtype=object)

    def settle(self, where: np.ndarray, status: str, reason: np.ndarray | str = "") -> None:
        """Outcomes that need no image work, set for a whole mask at once."""
        self.status[where] = status
        self.reason[where] = reason
        if self.progress is not None:
            self.progress.advance(int(np.count_nonzero(where)))

    def fail_settled(self, where: np.ndarray, detail: np.ndarray | str) -> None:
        """Failures known before any image work: older outputs removed, on_error applied."""
        for index in np.flatnonzero(where & self.ours):
            _remove_output(self.out_dir, self.rels[index])
        if self.on_error == "error" and where.any():
            index = int(np.flatnonzero(where)[0])
            raise ImageError(_label(self.columns, index), self.reason[index],
                             detail if isinstance(detail, str) else
                             detail[int(np.count_nonzero(where[:index]))])

    def on_done(self, done: _Done) -> None:
        """One item the pool resized (or failed on): recorded, checkpointed now and then."""
        index, rel = done.index, self.rels[done.index]
        ok = done.status != FAILED
        self.status[index], self.reason[index] = done.status, done.reason
        if self.src_size[index] >= 0:
            item = _item(self.columns, index)
            self.manifest.put([(item.sample_id, item.path, item.member,
                                int(self.src_size[index]), int(self.src_mtime[index]),
                                self.fingerprint, rel if ok else "", done.bytes_written,
                                done.status, done.reason, done.detail)])
        if not ok:
            if self.ours[index]:                          # an older version of this output
                _remove_output(self.out_dir, rel)
            if self.on_error == "error":
                raise ImageError(_label(self.columns, index), done.reason, done.detail)
        self.bytes_written += done.bytes_written
        self.unsynced = self.unsynced or ok
        if self.progress is not None:
            self.progress.advance()
        if time.monotonic() - self.last_save >= CHECKPOINT_SECONDS:
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
                    pc.invert(pc.is_in(output, value_set=pa.array(run.rels, pa.string())))
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


def _existing(out_dir: Path, rels: np.ndarray) -> np.ndarray:
    """Which of the relative output paths exist: a stat each when they are few, else one
    listing per folder (a tenth of a stat per file)."""
    if len(rels) < LIST_OUTPUTS_FROM:
        sizes, _ = stat_files((os.path.join(str(out_dir), "") + rels.astype(object)).tolist())
        return sizes >= 0
    listed: list[str] = []
    for folder in _folders(rels):
        try:
            names = os.listdir(out_dir / folder if folder else out_dir)
        except (FileNotFoundError, NotADirectoryError):
            continue
        listed += [folder + name for name in names]
    return pc.is_in(pa.array(rels, pa.string()),
                    value_set=pa.array(listed, pa.string())).to_numpy(zero_copy_only=False)


def _plan(run: _Run, recorded: _Recorded) -> np.ndarray:
    """Settle what needs no image work (unchanged, remembered or obvious failures), as columns;
    returns the positions that need resizing."""
    frame = run.frame
    no_path = (frame["path"] == "").to_numpy()
    current = (recorded.known & (run.src_size >= 0) & ~no_path
               & recorded.equal("src_path", run.columns["path"])
               & recorded.equal("member", run.columns["member"])
               & (recorded.numbers("src_size") == run.src_size)
               & (recorded.numbers("src_mtime_ns") == run.src_mtime)
               & recorded.equal("spec", run.fingerprint))
    failed_before = current & recorded.equal("status", FAILED)
    may_be_unchanged = current & ~failed_before & recorded.equal("output", run.rels)
    candidates = np.flatnonzero(may_be_unchanged)
    unchanged = np.zeros(len(frame), bool)
    unchanged[candidates] = _existing(run.out_dir, run.rels[candidates])
    run.settle(unchanged, UNCHANGED)
    run.settle(no_path, FAILED, MISSING)
    run.fail_settled(no_path, "no source path")
    if failed_before.any():
        recorded_reason = recorded.strings("reason", failed_before)
        recorded_reason[recorded_reason == ""] = UNSUPPORTED
        run.settle(failed_before, FAILED, recorded_reason)
        run.fail_settled(failed_before, recorded.strings("detail", failed_before))
    return np.flatnonzero(~(no_path | failed_before | unchanged))


def stage_resize(items: Sequence[ResizeItem] | pd.DataFrame, out_dir: Path, spec: ResizeSpec, *,
                 workers: int | None = None, on_error: str = "skip",
                 progress: Progress | None = None) -> ResizeResult:
    """Resize every item into out_dir/<output_name>.<jpg|png>, redoing only what changed.

    `items` is a list of ResizeItem or a frame with their ITEM_COLUMNS (the columnar form a
    million samples arrive in). on_error="skip" turns a bad image into a failed outcome with
    ImageError's reason; on_error="error" raises that ImageError (work finished so far is kept
    and remembered). Raises ConfigError for a bad option, an output folder that overlaps the
    sources, or colliding output names; PathEscapeError for an output name that leaves out_dir.
    """
    started = time.perf_counter()
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error {on_error!r} is not one of {', '.join(ON_ERROR)}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers {workers!r} must be a whole number >= 1 (or None for every core)")
    out_dir = Path(out_dir).absolute()
    frame = items_frame(items)
    columns = _columns(frame)
    rels = _output_rels(frame, columns, spec.extension)
    _refuse_source_overlap(columns["path"], out_dir)
    _refuse_escaping_folders(rels, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps_under(out_dir)          # what a killed run left (never a live run's)

    manifest = ResizeManifest(out_dir)
    recorded = _Recorded(manifest.table, columns["sample_id"])
    earlier_outputs = pc.drop_null(manifest.table["output"])
    ours = pc.is_in(pa.array(rels, pa.string()),
                    value_set=earlier_outputs.combine_chunks()).to_numpy(zero_copy_only=False)
    src_size, src_mtime = stat_files(columns["path"].tolist())
    run = _Run(frame, columns, rels, out_dir, spec, on_error, progress, manifest, src_size,
               src_mtime, ours=ours)
    try:
        _remove_stale(run, recorded)
        todo = _plan(run, recorded)
        del recorded
        tasks = [_Task(int(i), _item(columns, int(i)), rels[i]) for i in todo]
        _run_tasks(tasks, out_dir, spec, workers, run.on_done)
    finally:
        run.save()
    manifest.finish()
    return ResizeResult.of(run.frame["sample_id"], run.status, run.reason, out_dir, rels, spec,
                           time.perf_counter() - started, run.bytes_written)


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
