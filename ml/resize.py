"""stage_resize: turn every source image into a correct-RGB file of one size, incrementally, on
every core. Seed 004's `stage_resize.py` (stretch, full decode, one process, in place) grown up.

- Three geometries (ResizeSpec.mode): `stretch` to exactly WxH (seed 004), `letterbox` (keep the
  aspect ratio, pad with `fill`, centred: seed 003's padding) and `shorter_side_crop` (scale the
  shorter side to fit, centre-crop the rest).
- Speed: a JPEG is decoded in the DCT domain at the smallest 1/1, 1/2, 1/4 or 1/8 scale that is
  still at least the size the geometry needs (Pillow's draft), then resampled with LANCZOS from
  the kept region; a ProcessPoolExecutor spreads chunks of items over every core.
- Incremental: `out_dir/.resize_manifest.sqlite` (ml/resize_manifest.py) remembers, per sample,
  the source signature (size, mtime_ns, HDF5 member) and the spec fingerprint; unchanged
  samples cost two stats, and a checkpoint writes only what changed.
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
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from ml.atomic import remove_stale_temps_under, temp_sibling
from ml.containers import close_all as close_containers, read_member
from ml.errors import ConfigError, DatasetError, ImageError, PathEscapeError
from ml.imageio import MISSING, NOT_AN_IMAGE, UNSUPPORTED, load_rgb, read_header
from ml.process_pool import pool_context
from ml.resize_manifest import MANIFEST_NAME, ResizeManifest  # noqa: F401 (named here too)
from ml.safe_paths import is_inside, relative_name
from ml.progress import Progress

if TYPE_CHECKING:
    import pandas

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
    """Every item's outcome (in input order) and the run's totals."""

    outcomes: list[ResizeOutcome]
    processed: int               # resized in this run
    unchanged: int               # up to date from an earlier run: no image work
    failed: int
    seconds: float
    bytes_written: int

    def to_frame(self) -> "pandas.DataFrame":
        import pandas as pd

        columns = [f.name for f in ResizeOutcome.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(o) for o in self.outcomes], columns=columns)


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
    file). No fsync per image (it costs more than the encode): the manifest, which is fsynced,
    records each output's size, and an output a crash left short is redone on the next run."""
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


# ----------------------------------------------------------------------------- manifest

def _signature(item: ResizeItem) -> list | None:
    """What identifies this version of the source: [path, member, size, mtime_ns] (no read);
    None when it cannot be stat'ed (the decode then says why: missing, unreadable)."""
    try:
        st = os.stat(item.path)
    except OSError:
        return None
    return [item.path, item.member, st.st_size, st.st_mtime_ns]


def _output_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


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

def _output_rel(item: ResizeItem, extension: str) -> str:
    return relative_name(item.output_name, what=f"sample {item.sample_id!r}: output name") + extension


def _check_items(items: Sequence[ResizeItem], extension: str) -> list[str]:
    """Relative output paths, one per item; refuse duplicate ids and names that collide."""
    seen_ids: set[str] = set()
    owner: dict[str, ResizeItem] = {}
    rels = []
    for item in items:
        if item.sample_id in seen_ids:
            raise ConfigError(f"sample id {item.sample_id!r} appears twice in the resize items")
        seen_ids.add(item.sample_id)
        rel = _output_rel(item, extension)
        if rel in owner:
            raise ConfigError(f"{owner[rel].label} and {item.label} would both be resized to "
                              f"{rel} (their names differ only in the extension, which the "
                              f"output format {extension} replaces); rename one of the files")
        owner[rel] = item
        rels.append(rel)
    return rels


def _refuse_source_overlap(items: Sequence[ResizeItem], out_dir: Path) -> None:
    """ConfigError when out_dir equals or sits inside a source folder, or contains a source."""
    out = out_dir.resolve()
    folders = {os.path.dirname(os.path.abspath(i.path)) for i in items if i.path}
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


def _refuse_escaping_folders(rels: list[str], out_dir: Path) -> None:
    """PathEscapeError when a folder under out_dir that outputs go to is a symlink leading out
    of it (writing there could overwrite someone's files, sources included)."""
    out = out_dir.resolve()
    for folder in sorted({os.path.dirname(rel) for rel in rels} - {""}):
        path = out_dir / folder
        if path.exists() and not is_inside(out, path.resolve()):
            raise PathEscapeError(f"{path} leads outside the output folder {out_dir} (a symlink); "
                                  "remove it so outputs stay inside the output folder")


# ----------------------------------------------------------------------------- stage_resize

@dataclass
class _Run:
    """Book-keeping of one stage_resize call."""

    items: Sequence[ResizeItem]
    rels: list[str]
    out_dir: Path
    spec: ResizeSpec
    on_error: str
    progress: Progress | None
    entries: ResizeManifest
    ours: set[str] = field(default_factory=set)      # outputs an earlier run recorded writing
    outcomes: list[ResizeOutcome | None] = field(default_factory=list)
    signatures: list[list | None] = field(default_factory=list)
    bytes_written: int = 0
    last_save: float = field(default_factory=time.monotonic)
    fingerprint: str = ""                             # of the spec, computed once per run

    def __post_init__(self) -> None:
        self.fingerprint = self.spec.fingerprint()

    def record(self, index: int, status: str, reason: str = "", detail: str = "",
               nbytes: int = 0) -> None:
        item, rel = self.items[index], self.rels[index]
        ok = status != FAILED
        self.outcomes[index] = ResizeOutcome(
            item.sample_id, str(self.out_dir / rel) if ok else "", self.spec.width if ok else 0,
            self.spec.height if ok else 0, status, reason)
        if status != UNCHANGED and self.signatures[index] is not None:
            self.entries.set(item.sample_id, {
                "source": self.signatures[index], "spec": self.fingerprint,
                "output": rel if ok else "", "bytes": nbytes, "status": status,
                "reason": reason, "detail": detail})
        if status == FAILED:
            if rel in self.ours:                          # an older version of this output
                _remove_output(self.out_dir, rel)
            if self.on_error == "error":
                raise ImageError(item.label, reason, detail)
        self.bytes_written += nbytes
        if self.progress is not None:
            self.progress.advance()
        if time.monotonic() - self.last_save >= CHECKPOINT_SECONDS:
            self.save()

    def on_done(self, done: _Done) -> None:
        self.record(done.index, done.status, done.reason, done.detail, done.bytes_written)

    def save(self) -> None:
        self.entries.save()
        self.last_save = time.monotonic()


def _is_current(entry: dict | None, signature: list | None, fingerprint: str) -> bool:
    return (entry is not None and signature is not None and entry.get("source") == signature
            and entry.get("spec") == fingerprint)


def _plan(run: _Run) -> list[_Task]:
    """Settle what needs no image work (unchanged, remembered or obvious failures); the rest."""
    fingerprint = run.fingerprint
    todo = []
    for index, (item, rel) in enumerate(zip(run.items, run.rels)):
        signature = run.signatures[index]
        entry = run.entries.get(item.sample_id)
        if not item.path:
            run.record(index, FAILED, MISSING, "no source path")
        elif not _is_current(entry, signature, fingerprint):
            todo.append(_Task(index, item, rel))
        elif entry.get("status") == FAILED:
            run.record(index, FAILED, entry.get("reason", UNSUPPORTED), entry.get("detail", ""))
        elif entry.get("output") == rel and _output_size(run.out_dir / rel) == entry.get("bytes"):
            run.record(index, UNCHANGED)
        else:
            todo.append(_Task(index, item, rel))
    return todo


def _remove_stale(run: _Run) -> None:
    """Delete outputs recorded earlier that no current item produces, and forget their entries."""
    current_ids = {item.sample_id for item in run.items}
    planned = set(run.rels)
    for sample_id in run.entries.ids():
        rel = run.entries.get(sample_id).get("output", "")
        if rel and rel not in planned:
            _remove_output(run.out_dir, rel)
        if sample_id not in current_ids:
            run.entries.delete(sample_id)
        elif rel and rel not in planned:
            run.entries.set(sample_id, {**run.entries.get(sample_id), "output": ""})


def stage_resize(items: Sequence[ResizeItem], out_dir: Path, spec: ResizeSpec, *,
                 workers: int | None = None, on_error: str = "skip",
                 progress: Progress | None = None) -> ResizeResult:
    """Resize every item into out_dir/<output_name>.<jpg|png>, redoing only what changed.

    on_error="skip" turns a bad image into a failed outcome with ImageError's reason;
    on_error="error" raises that ImageError (work finished so far is kept and remembered).
    Raises ConfigError for a bad option, an output folder that overlaps the sources, or
    colliding output names; PathEscapeError for an output name that leaves out_dir.
    """
    started = time.perf_counter()
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error {on_error!r} is not one of {', '.join(ON_ERROR)}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers {workers!r} must be a whole number >= 1 (or None for every core)")
    out_dir = Path(out_dir).absolute()
    rels = _check_items(items, spec.extension)
    _refuse_source_overlap(items, out_dir)
    _refuse_escaping_folders(rels, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps_under(out_dir)          # what a killed run left (never a live run's)

    entries = ResizeManifest(out_dir)
    run = _Run(items, rels, out_dir, spec, on_error, progress, entries,
               ours={e.get("output", "") for e in entries.values()} - {""},
               outcomes=[None] * len(items), signatures=[_signature(i) for i in items])
    try:
        _remove_stale(run)
        todo = _plan(run)
        _run_tasks(todo, out_dir, spec, workers, run.on_done)
    finally:
        run.save()
    outcomes = [o for o in run.outcomes if o is not None]
    counts = {s: sum(o.status == s for o in outcomes) for s in (RESIZED, UNCHANGED, FAILED)}
    return ResizeResult(outcomes, counts[RESIZED], counts[UNCHANGED], counts[FAILED],
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
