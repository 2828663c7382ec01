"""The checks of each catalog row: invalid identifiers, existence (one listing per folder, one
key listing per HDF5 container), decoding on a pool of processes, and the checksum registry.
The findings are columns (Findings), one entry per row."""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml.checksums import (ChecksumEntry, ChecksumRegistry, Recorded, content_difference,
                          now_text, sha256_hex, stat_changed, stat_difference)
from ml.columns import is_utf8, text_column
from ml.containers import is_recordio, member_keys, read_member
from ml.errors import ConfigError, DatasetError, ImageError
from ml.file_stats import NO_MTIME, stat_files
from ml.imageio import CHANGED, MISSING, UNSUPPORTED, decode
from ml.process_pool import in_flight, pool_context
from ml.progress import Progress
from ml.quality.signals import DRAFT_SIDE, SignalBatch, SignalColumns
from ml.safe_paths import is_within
from ml.sample_status import CORRUPT, INVALID, MISSING as MISSING_STATUS, OK, STATUSES
from ml.verify.config import VerifyConfig

# per-row codes 0..3 are positions in STATUSES (ml/sample_status.py)
INVALID_REASON = "invalid path"
# Asking for a 1x1 draft makes the JPEG decoder pick its smallest DCT scale (1/8 of each side):
# every entropy-coded byte is still decoded (so truncation is caught), the IDCT work shrinks 64x.
SMALLEST_DRAFT = (1, 1)


@dataclass
class _Outcome:
    """The check of one present row, as a decode worker returns it."""

    status: str = OK
    reason: str = ""
    detail: str = ""
    sha256: str = ""
    size: int | None = None
    mtime_ns: int | None = None


@dataclass
class _Decoded:
    """A decode task's findings, columnar: one small pickle per task from a worker process,
    applied by array indexing."""

    pos: np.ndarray                          # catalog row positions
    code: np.ndarray                         # STATUSES index per row
    sha256: np.ndarray                       # S64 hex ('' where not read)
    size: np.ndarray                         # bytes read, -1 where not read
    mtime_ns: np.ndarray
    problems: list[tuple[int, str, str]]     # (index into pos, reason, detail), rows not ok
    signals: SignalColumns | None

    @classmethod
    def of(cls, outcomes: list[tuple[int, _Outcome]], batch: SignalBatch | None) -> "_Decoded":
        n = len(outcomes)
        code = np.zeros(n, np.int8)
        problems = []
        for i, (_, outcome) in enumerate(outcomes):
            if outcome.status != OK:
                code[i] = STATUSES.index(outcome.status)
                problems.append((i, outcome.reason, outcome.detail))
        return cls(
            pos=np.fromiter((p for p, _ in outcomes), np.int64, n), code=code,
            sha256=np.array([o.sha256 for _, o in outcomes], dtype="S64"),
            size=np.fromiter((-1 if o.size is None else o.size for _, o in outcomes),
                             np.int64, n),
            mtime_ns=np.fromiter((NO_MTIME if o.mtime_ns is None else o.mtime_ns
                                  for _, o in outcomes), np.int64, n),
            problems=problems, signals=None if batch is None else batch.measure(n))


HEX_DIGITS = 64             # a sha256 in hex


class Findings:
    """Everything found so far, by catalog row position (arrays: 200k rows stay cheap)."""

    def __init__(self, n: int):
        self.code = np.zeros(n, np.int8)
        self.reason = np.empty(n, dtype=object)           # set on the noted rows only
        self.detail = np.empty(n, dtype=object)           # (filled with '', 7 ms each at 366k)
        self.sha256 = np.zeros(n, dtype="S64")            # hex, hashed in this run (decode)
        self.hashed = False                               # whether any row was hashed
        self.recorded_sha256: pa.Array | None = None      # the registry's, aligned (exists level)
        self.from_registry = np.zeros(n, bool)            # rows whose hash is the registry's
        self.size = np.full(n, -1, np.int64)              # -1: not looked at
        self.mtime_ns = np.full(n, NO_MTIME, np.int64)    # NO_MTIME: none (container members)
        self.signals: SignalColumns | None = None         # filled at level decode with signals
        self.noted = np.zeros(n, bool)                    # rows given a reason or detail

    def mark(self, pos: Any, status: str, reason: str, detail: Any) -> None:
        self.code[pos] = STATUSES.index(status)
        self.reason[pos] = reason
        self.detail[pos] = detail
        self.noted[pos] = True

    def text(self, values: np.ndarray) -> pa.StringArray:
        """`reason` or `detail` as Arrow text, converted from the noted rows alone ('' on the
        others): a million-row object column of mostly '' took 15 ms to convert whole."""
        rows = np.flatnonzero(self.noted)
        index = np.zeros(len(values), np.int32)
        index[rows] = np.arange(1, len(rows) + 1, dtype=np.int32)
        return pa.array(["", *values[rows].tolist()], pa.string()).take(pa.array(index))

    def statuses(self) -> pa.StringArray:
        """Each row's status as Arrow text."""
        return pa.array(STATUSES, pa.string()).take(pa.array(self.code.astype(np.int32)))

    def apply(self, decoded: "_Decoded") -> None:
        """A decode task's findings, placed by array indexing (no Python per good row)."""
        pos = decoded.pos
        self.code[pos] = decoded.code
        self.sha256[pos] = decoded.sha256
        self.hashed = True
        read = decoded.size >= 0
        self.size[pos[read]] = decoded.size[read]
        self.mtime_ns[pos[read]] = decoded.mtime_ns[read]
        for i, reason, detail in decoded.problems:
            self.reason[pos[i]], self.detail[pos[i]] = reason, detail
            self.noted[pos[i]] = True
        if decoded.signals is not None and self.signals is not None:
            self.signals.place(pos, decoded.signals)

    def status(self, pos: int) -> str:
        return STATUSES[self.code[pos]]

    def hashes(self, where) -> pa.StringArray:
        """The hex sha256 hashed in this run at `where` ('' where none), as Arrow text over
        the fixed-width bytes themselves where every row was hashed (no copy; through binary
        it took two)."""
        values = np.ascontiguousarray(self.sha256[where])
        rows = values.view(np.uint8).reshape(len(values), HEX_DIGITS)
        hashed = rows[:, 0] != 0
        digits = rows if hashed.all() else rows[hashed]
        if len(values) * HEX_DIGITS >= 2 ** 31 or not np.all(digits[:, -1] != 0):
            return pa.array(values, pa.binary()).cast(pa.string())     # not all 64 digits
        offsets = np.zeros(len(values) + 1, np.int32)
        np.cumsum(np.where(hashed, HEX_DIGITS, 0), out=offsets[1:])
        return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets),
                                           pa.py_buffer(digits))

    def sha256_column(self) -> pa.Array:
        """Every row's sha256 ('' when unknown): hashed now, or as the registry has it (at
        level exists nothing is hashed: no column of a million empty hashes is made)."""
        if self.recorded_sha256 is None or not self.from_registry.any():
            return self.hashes(slice(None))
        if not self.hashed and self.from_registry.all():
            return self.recorded_sha256              # every row's, as recorded: no copy
        hashed = self.hashes(slice(None)) if self.hashed else pa.scalar("", pa.string())
        return pc.if_else(pa.array(self.from_registry), self.recorded_sha256, hashed)


@dataclass
class Rows:
    """The catalog columns verification reads, as arrays."""

    paths: pa.Array
    member_keys: pa.StringArray  # a container member's key ('' for plain files)
    in_container: np.ndarray     # bool: the row is a member of an HDF5 or RecordIO container
    source_keys: pd.Series
    used: np.ndarray             # bool
    index_in_source: np.ndarray  # int64

    @classmethod
    def of(cls, catalog: pd.DataFrame) -> "Rows":
        member_keys = text_column(catalog["member"])
        return cls(paths=text_column(catalog["path"]), member_keys=member_keys,
                   in_container=pc.not_equal(member_keys, "").to_numpy(zero_copy_only=False),
                   source_keys=catalog["source_key"].astype(str).reset_index(drop=True),
                   used=catalog["used"].astype(bool).to_numpy(),
                   index_in_source=catalog["index_in_source"].astype("int64").to_numpy())

    def registry_keys(self, positions: np.ndarray | None = None) -> pa.StringArray:
        """The checksum registry's key of the rows at `positions` (every row when None): the
        source key, with '#member' for a member other than the key itself. Made when asked and
        not kept: a million keys held to the step's end were ~70 MB of its peak RSS."""
        if positions is None:
            keys = text_column(self.source_keys)
            members, inside = self.member_keys, self.in_container
        else:
            at = np.asarray(positions, np.int64)
            keys = text_column(self.source_keys.iloc[at])
            members, inside = self.member_keys.take(pa.array(at)), self.in_container[at]
        inner = pc.and_(pa.array(inside), pc.not_equal(members, keys))
        return pc.if_else(inner, pc.binary_join_element_wise(keys, members, "#"), keys)

    def path(self, pos: int) -> str:
        return self.paths[int(pos)].as_py()

    def paths_at(self, positions: np.ndarray) -> pa.StringArray:
        """The paths at `positions` (sorted, distinct): the column itself, no copy, when they
        are every row."""
        if len(positions) == len(self.paths):
            return self.paths
        return self.paths.take(pa.array(np.asarray(positions, np.int64)))

    def member(self, pos: int) -> str:
        return self.member_keys[int(pos)].as_py()

    def keys_at(self, positions) -> list[str]:
        return self.registry_keys(positions).to_pylist()


# ----------------------------------------------------------------------------- invalid rows

def root_prefix(images_dir: str) -> str:
    """The images folder as a prefix of its files' paths (absolute, with a trailing separator)."""
    return os.path.join(os.path.abspath(images_dir), "")


def prefix_folder(prefix: str) -> str:
    """The folder a root prefix names, as it is listed and as paths split into it."""
    return prefix[:-1] or "/"


def invalid_rows(catalog: pd.DataFrame, rows: Rows, images_dir: str,
                  found: Findings) -> np.ndarray:
    """Mark rows never to open: status 'invalid_path', no path, or (plain files) a path that
    does not start with `images_dir` ('..' inside a folder is caught per folder when listing).
    Returns the invalid mask."""
    declared = (catalog["status"].astype(str) == INVALID).to_numpy()
    no_path = pc.equal(rows.paths, "").to_numpy(zero_copy_only=False)
    inside = pc.starts_with(rows.paths, root_prefix(images_dir)).to_numpy(zero_copy_only=False)
    outside = ~rows.in_container & ~inside & ~no_path
    invalid = declared | no_path | outside
    reasons = catalog["reason"] if "reason" in catalog else None
    for pos in np.flatnonzero(invalid):
        if declared[pos]:
            why = (str(reasons.iat[pos]) if reasons is not None and pd.notna(reasons.iat[pos])
                   else "") or "the identifier escapes the images folder"
        elif no_path[pos]:
            why = "no path"
        else:
            why = f"path {rows.path(pos)} lies outside the images folder {images_dir}"
        found.mark(pos, INVALID, INVALID_REASON, why)
    return invalid


# ----------------------------------------------------------------------------- existence

def _list_folder(folder: str) -> tuple[list[str], str]:
    """Names of the files in `folder` from one listing, or (empty, why it cannot be listed).
    A folder whose link count says it has no subfolders (2 on ext4, xfs and tmpfs) is listed
    by name alone, a third faster than typing each entry: none of its names is a folder."""
    try:
        if os.stat(folder).st_nlink == 2:
            return os.listdir(folder), ""
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.is_file()], ""
    except FileNotFoundError:
        return [], f"folder {folder} does not exist"
    except NotADirectoryError:
        return [], f"{folder} is not a folder"
    except OSError as exc:
        return [], f"folder {folder} cannot be listed ({exc.strerror})"


ARROW_NAMES_FROM = 4096    # a folder with this many samples is matched by an Arrow join


def _not_among(values: pa.StringArray, among: pa.StringArray) -> np.ndarray:
    """Which of `values` are not among `among`, by an Arrow anti join (no Python string per
    value; at 366,858 names it took half the time of `is_in`, whose hash set is built on one
    thread)."""
    wanted = pa.table({"value": values.cast(pa.string()),
                       "row": np.arange(len(values), dtype=np.int64)})
    gone = wanted.join(pa.table({"value": among.cast(pa.string())}), "value",
                       join_type="left anti")["row"]
    absent = np.zeros(len(values), bool)
    absent[gone.to_numpy()] = True
    return absent


def _as_arrow(listed: list[str] | pa.StringArray) -> pa.StringArray:
    """Listed names as Arrow text. A name that is not UTF-8 (os.listdir keeps its bytes as
    surrogate escapes) is left out: it names no catalogued file, whose paths are all text."""
    if isinstance(listed, pa.Array):
        return listed
    try:
        return pa.array(listed, pa.string())
    except UnicodeEncodeError:
        return pa.array([n for n in listed if is_utf8(n)], pa.string())


def _absent(names: pa.StringArray, listed: list[str] | pa.StringArray) -> np.ndarray:
    """Which of `names` are not among `listed`: an Arrow anti join for a large folder or a
    listing already in Arrow (the images folder's), a Python set for a small folder."""
    if len(names) >= ARROW_NAMES_FROM or isinstance(listed, pa.Array):
        return _not_among(names, _as_arrow(listed))
    wanted, have = names.to_pylist(), set(listed)
    if have.issuperset(wanted):                     # all there: the common case, at C speed
        return np.zeros(len(wanted), bool)
    return np.fromiter((n not in have for n in wanted), bool, len(wanted))


def _list_folder_as_arrow(folder: str) -> tuple[pa.StringArray, str]:
    """`_list_folder`, the names as Arrow text (converted on the listing thread)."""
    names, why = _list_folder(folder)
    return _as_arrow(names), why


class Listings:
    """Folder listings made ahead on one background thread (listing is system calls; the
    main thread meanwhile prepares the rows and matches the folder before). The images folder
    is listed from the moment verification starts: most layouts keep their files there, and
    its listing (0.12 s for seed 000's 366,858 names) would otherwise wait for the catalog's
    paths to be split. Folders of the catalog are listed AHEAD at a time, in the order they
    are matched, so the listings held stay few."""

    AHEAD = 8

    def __init__(self, pool: ThreadPoolExecutor):
        self.pool = pool
        self.pending: dict[str, Any] = {}

    def prefetch(self, folder: str, as_arrow: bool = False) -> None:
        """Begin listing `folder`; `as_arrow`: its names as Arrow text, for a folder matched
        by an Arrow join (the images folder)."""
        if folder not in self.pending:
            self.pending[folder] = self.pool.submit(
                _list_folder_as_arrow if as_arrow else _list_folder, folder)

    def take(self, folder: str) -> tuple[list[str] | pa.StringArray, str]:
        self.prefetch(folder)
        return self.pending.pop(folder).result()

    def in_order(self, folders: list[str]) -> Iterator[tuple[list[str] | pa.StringArray, str]]:
        """The listings of `folders`, in their order, each begun AHEAD folders before it is
        taken."""
        for folder in folders[:self.AHEAD]:
            self.prefetch(folder)
        for i, folder in enumerate(folders):
            if i + self.AHEAD < len(folders):
                self.prefetch(folders[i + self.AHEAD])
            yield self.take(folder)


def _escapes(folder: str, root: str) -> str:
    """Why a folder under `root` by prefix still climbs out of it with '..' ('' when it does not)."""
    normal = os.path.normpath(folder)
    if normal == folder or os.path.join(normal, "").startswith(root):
        return ""
    return f"'..' in {folder} climbs out of the images folder"


SPLIT_ROWS = 131_072       # paths split into folder and name at a time (bounded memory)


def _folders_and_names(paths: pa.Array) -> tuple[np.ndarray, list[str], pa.Array]:
    """Each path as (a folder code, its folder, its file name; '/' for a file at the top), split
    a chunk at a time: the transient lists of parts of a million paths would cost ~200 MB at
    once."""
    index: dict[str, int] = {}
    codes, names = [], []
    for lo in range(0, len(paths), SPLIT_ROWS):
        parts = pc.split_pattern(paths.slice(lo, SPLIT_ROWS), "/", max_splits=1, reverse=True)
        folders = pc.list_element(parts, 0).dictionary_encode()
        ids = np.array([index.setdefault(f, len(index)) for f in folders.dictionary.to_pylist()],
                       np.int64)
        codes.append(ids[folders.indices.to_numpy(zero_copy_only=False)])
        names.append(pc.list_element(parts, 1))
    return np.concatenate(codes), [f or "/" for f in index], pa.concat_arrays(names)


def _names_after(paths: pa.StringArray, prefix: str) -> pa.StringArray:
    """What follows `prefix` in each of `paths`, null where a path does not start with it (a
    null is never among a listing): bytes sliced off, 4 ms at 366,858 paths (by characters
    it took 36)."""
    rest = pc.binary_slice(paths.cast(pa.binary()), len(prefix.encode()), 2 ** 31 - 1)
    return pc.if_else(pc.starts_with(paths, prefix), rest.cast(pa.string()),
                      pa.scalar(None, pa.string()))


def _outside_root_files(positions: np.ndarray, rows: Rows, root: str, listings: Listings,
                        progress: Progress | None) -> tuple[np.ndarray, bool]:
    """(the rows at `positions` whose path is not a file of the images folder itself, whether
    that folder was matched). Each path after the images folder's prefix is matched against
    the folder's listed names in one anti join: a path matches only when it is that folder and
    a listed name exactly (a listed name holds no separator), so in a flat layout (seed 000's
    one folder of 366,858 files) only the missing rows are left for the per-folder check,
    which names why. Names are half as long as paths: the join took half the time."""
    if len(positions) < ARROW_NAMES_FROM:
        return positions, False
    names = _names_after(rows.paths_at(positions), root)    # while the folder is listed
    listed, why = listings.take(prefix_folder(root))
    if why or not len(listed):
        return positions, False
    absent = _not_among(names, _as_arrow(listed))
    if progress is not None:
        progress.advance(int(len(positions) - np.count_nonzero(absent)))
    return positions[absent], True


def _check_files_exist(positions: np.ndarray, rows: Rows, found: Findings, root: str,
                       listings: Listings, progress: Progress | None) -> None:
    """The images folder's own files matched by name first (`_outside_root_files`), then
    one listing per other folder (`listings`); rows grouped by folder with Arrow, names tested
    against the listing as a set. `root`: the images folder with a trailing separator."""
    positions, root_matched = _outside_root_files(positions, rows, root, listings, progress)
    if len(positions) == 0:
        return
    codes, folders, names = _folders_and_names(rows.paths_at(positions))
    escapes = [_escapes(folder, root) for folder in folders]
    matched = prefix_folder(root) if root_matched else None     # its rows here are missing
    listed = listings.in_order([f for f, escape in zip(folders, escapes)
                                if not escape and f != matched])
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(folders)))])
    name_column = names.take(pa.array(order))
    for k, folder in enumerate(folders):
        lo, hi = bounds[k], bounds[k + 1]
        if escapes[k]:
            found.mark(positions[order[lo:hi]], INVALID, INVALID_REASON, escapes[k])
        elif folder == matched:
            found.mark(positions[order[lo:hi]], MISSING_STATUS, MISSING, "no such file")
        else:
            files, why = next(listed)
            absent = _absent(name_column.slice(lo, hi - lo), files)
            if absent.any():
                found.mark(positions[order[lo:hi][absent]], MISSING_STATUS, MISSING,
                           why or "no such file")
        if progress is not None:
            progress.advance(int(hi - lo))


def _container_listing(container: str) -> tuple[dict[str, int], str, str]:
    """{dataset key: nbytes} of an HDF5 container from one traversal, or (empty, status, why)."""
    if not os.path.isfile(container):
        return {}, MISSING_STATUS, f"container {container} does not exist"
    keys: dict[str, int] = {}
    if is_recordio(container):
        try:
            return {k: 0 for k in member_keys(container)}, "", ""
        except (DatasetError, OSError) as exc:
            return {}, CORRUPT, f"container {container} cannot be read as RecordIO ({exc})"
    try:
        with h5py.File(container, "r") as h5:
            h5.visititems(lambda name, obj: keys.__setitem__(name, int(obj.nbytes))
                          if isinstance(obj, h5py.Dataset) else None)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        return {}, CORRUPT, f"container {container} cannot be read as HDF5 ({exc})"
    return keys, "", ""


def _by_container(positions: np.ndarray, rows: Rows) -> dict[str, list[tuple[int, str]]]:
    groups: dict[str, list[tuple[int, str]]] = {}
    for pos in positions:
        groups.setdefault(rows.path(pos), []).append((int(pos), rows.member(pos).strip("/")))
    return groups


def _check_members_exist(positions: np.ndarray, rows: Rows, found: Findings,
                         progress: Progress | None) -> None:
    """One key listing per HDF5 container; members' sizes kept for the exists-level registry."""
    for container, items in _by_container(positions, rows).items():
        keys, status, why = _container_listing(container)
        for pos, member in items:
            if status == CORRUPT:
                found.mark(pos, CORRUPT, UNSUPPORTED, why)
            elif member not in keys:
                found.mark(pos, MISSING_STATUS, MISSING, why or f"no key {member!r} in {container}")
            else:
                found.size[pos] = keys[member]
        if progress is not None:
            progress.advance(len(items))


# ----------------------------------------------------------------------------- decoding

def _decode_bytes(data: bytes, name: str, max_pixels: int, outcome: _Outcome,
                  batch: SignalBatch | None, row: int) -> _Outcome:
    """Hash and really decode one image's bytes; with a signal batch, its working copy goes
    to the batch as row `row` (read from the same decoded image); classify a failure (never
    raises)."""
    outcome.sha256 = sha256_hex(data)
    outcome.size = len(data)
    try:
        image = decode(data, name=name, max_pixels=max_pixels,
                       draft_size=None if batch is not None else SMALLEST_DRAFT,
                       draft_longest_side=DRAFT_SIDE if batch is not None else None)
        with image:
            if batch is not None:
                batch.add(row, image)
    except ImageError as exc:
        outcome.status, outcome.reason, outcome.detail = CORRUPT, exc.reason, exc.detail
    except Exception as exc:  # a hostile file must be classified, not crash the whole check
        outcome.status, outcome.reason = CORRUPT, UNSUPPORTED
        outcome.detail = f"{type(exc).__name__}: {exc}"
    return outcome


def _file_outcomes(items: list[tuple[int, str]], max_pixels: int,
                   batch: SignalBatch | None) -> list[tuple[int, _Outcome]]:
    """Read, hash and decode each (position, path); the bytes are read once for both."""
    results = []
    for pos, path in items:
        try:
            with open(path, "rb") as fh:
                mtime_ns = os.fstat(fh.fileno()).st_mtime_ns
                data = fh.read()
        except FileNotFoundError:
            results.append((pos, _Outcome(MISSING_STATUS, MISSING, "vanished during verification")))
            continue
        except OSError as exc:
            results.append((pos, _Outcome(CORRUPT, UNSUPPORTED, f"cannot read: {exc.strerror}")))
            continue
        results.append((pos, _decode_bytes(data, path, max_pixels, _Outcome(mtime_ns=mtime_ns),
                                           batch, len(results))))
    return results


def _member_outcomes(container: str, items: list[tuple[int, str]],
                     max_pixels: int, batch: SignalBatch | None) -> list[tuple[int, _Outcome]]:
    """Read and decode (position, key) members of one container (HDF5 or RecordIO), opened once."""
    results = []
    if is_recordio(container):
        for pos, member in items:
            try:
                data = read_member(container, member)
            except ImageError as exc:
                results.append((pos, _Outcome(CORRUPT, exc.reason, exc.detail)))
                continue
            results.append((pos, _decode_bytes(data, f"{container}:{member}", max_pixels,
                                               _Outcome(), batch, len(results))))
        return results
    try:
        h5 = h5py.File(container, "r")
    except OSError as exc:
        return [(pos, _Outcome(CORRUPT, UNSUPPORTED, f"cannot open {container}: {exc}"))
                for pos, _ in items]
    with h5:
        for pos, member in items:
            try:
                value = h5[member][()]
            except (OSError, KeyError, TypeError) as exc:
                results.append((pos, _Outcome(CORRUPT, UNSUPPORTED, f"cannot read: {exc}")))
                continue
            data = value if isinstance(value, bytes) else np.asarray(value).tobytes()
            results.append((pos, _decode_bytes(data, f"{container}:{member}", max_pixels,
                                               _Outcome(), batch, len(results))))
    return results


def _decode_files(items: list[tuple[int, str]], max_pixels: int,
                  signals: bool = False) -> _Decoded:
    """A decode task (thread or process): plain files."""
    batch = SignalBatch() if signals else None
    return _Decoded.of(_file_outcomes(items, max_pixels, batch), batch)


def _decode_members(container: str, items: list[tuple[int, str]], max_pixels: int,
                    signals: bool = False) -> _Decoded:
    """A decode task (thread or process): members of one container."""
    batch = SignalBatch() if signals else None
    return _Decoded.of(_member_outcomes(container, items, max_pixels, batch), batch)


RECORD_BATCH = 65_536      # first sightings written to the registry per transaction


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


PROCESSES_FROM = 2_000     # images from which the decode runs on a process pool


def _decode_pool(config: VerifyConfig, count: int) -> Executor:
    """Processes, one per core (at most num_workers), from PROCESSES_FROM images; threads
    below, where starting processes costs more than it saves. Pillow's decoders release the
    GIL, so on large photos threads kept up with processes (bench/verify.py), but the rest of
    each image's work holds it: on 20,000 64 px JPEGs (2 cores) threads took 247 us per image
    and processes 116, and with the quality signals (many small numpy steps) 990 against 340."""
    processes = min(config.num_workers, os.cpu_count() or 1)
    if processes > 1 and count >= PROCESSES_FROM:
        return ProcessPoolExecutor(processes, mp_context=pool_context(["ml.verify"]))
    return ThreadPoolExecutor(max_workers=config.num_workers)


def _decode_all(positions: np.ndarray, rows: Rows, found: Findings, config: VerifyConfig,
                progress: Progress | None) -> None:
    """Decode every present row on a pool (`_decode_pool`), `chunk_size` images per task at
    most, fewer when that keeps every worker busy; each task's findings come back columnar."""
    plain = positions[~rows.in_container[positions]]
    plain = plain[pc.sort_indices(rows.paths.take(pa.array(plain))).to_numpy()]   # disk order
    size = max(1, min(config.chunk_size, math.ceil(len(positions) / (config.num_workers * 4))))
    in_containers = positions[rows.in_container[positions]]
    options = (config.max_pixels, config.signals)
    calls = itertools.chain(
        ((None, _decode_files, ([(p, path) for p, path in zip(part.tolist(), rows.paths.take(
            pa.array(part)).to_pylist())], *options)) for part in _chunks(plain, size)),
        ((None, _decode_members, (container, chunk, *options)) for container, items in
         _by_container(in_containers, rows).items() for chunk in _chunks(items, size)))
    try:
        with _decode_pool(config, len(positions)) as pool:   # tasks made as workers take them
            for _, future in in_flight(pool, calls, config.num_workers * 4):
                decoded = future.result()
                found.apply(decoded)
                if progress is not None:
                    progress.advance(len(decoded.pos))
    except BrokenProcessPool:
        raise DatasetError(
            "a decode worker process died (out of memory, or a decoder crashed on a file); "
            "set verify.num_workers: 1 to check the images in one process and find the file"
        ) from None


# ----------------------------------------------------------------------------- registry

def _compare_with_registry(registry: ChecksumRegistry, recorded: Recorded, positions: np.ndarray,
                           rows: Rows, found: Findings, level: str, accept_changes: bool) -> None:
    """Mark rows whose bytes (decode) or size/mtime (exists) changed since first seen; at decode
    level record first sightings of good files, and re-baseline when `accept_changes`. Columnar:
    Python runs per row only for the rows that changed or are seen for the first time."""
    pos = np.asarray(positions, np.int64)
    pos = pos[(found.code[pos] == 0) & (found.size[pos] >= 0)]
    known = recorded.known[pos]
    new, old = pos[~known], pos[known]
    stats_differ = stat_changed(recorded.size[old], recorded.mtime_ns[old], found.size[old],
                                found.mtime_ns[old])
    if level == "exists":
        found.recorded_sha256 = recorded.sha256
        found.from_registry[old] = True
        for p in old[stats_differ]:
            why = stat_difference(_entry(recorded, rows, p), int(found.size[p]),
                                  _mtime(found.mtime_ns[p]))
            found.mark(p, CORRUPT, CHANGED, f"{why}; run a decode-level check to compare contents")
        return
    content_differs = np.concatenate([     # a batch at a time: two million-row text copies
        pc.not_equal(found.hashes(part), recorded.sha256.take(pa.array(part))   # were 130 MB
                     ).to_numpy(zero_copy_only=False) for part in _chunks(old, RECORD_BATCH)]
        or [np.zeros(0, bool)])
    changed = old[content_differs]
    first_seen = new if not accept_changes else np.concatenate([new, changed])
    if not accept_changes:
        keys = rows.keys_at(changed)
        entries = registry.get_many(keys)
        for p, key in zip(changed, keys):
            found.mark(p, CORRUPT, CHANGED,
                       content_difference(entries[key], found.sha256[p].decode("ascii")))
    stamp = now_text()
    for part in _chunks(first_seen, RECORD_BATCH):      # Python objects for a batch at a time
        registry.record(ChecksumEntry(key, size, _mtime(mtime), sha, stamp) for key, size, mtime,
                        sha in zip(rows.keys_at(part), found.size[part].tolist(),
                                   found.mtime_ns[part].tolist(), found.hashes(part).to_pylist()))
    touched = old[~content_differs & stats_differ]      # same bytes, copied or touched
    registry.refresh_stats(zip(rows.keys_at(touched),
                               found.size[touched].tolist(),
                               [_mtime(m) for m in found.mtime_ns[touched].tolist()]))


def _mtime(value: int) -> int | None:
    return None if value == NO_MTIME else int(value)


def _entry(recorded: Recorded, rows: Rows, pos: int) -> ChecksumEntry:
    return ChecksumEntry(rows.keys_at([pos])[0], int(recorded.size[pos]),
                         _mtime(recorded.mtime_ns[pos]), recorded.sha256[int(pos)].as_py(), "")


def _stat_files(positions: np.ndarray, rows: Rows, found: Findings) -> None:
    """Exists level: size and mtime of the plain files at `positions` (those the registry
    knows); a file gone since the listing is missing."""
    if len(positions) == 0:
        return
    size, mtime = stat_files(rows.paths_at(positions))
    found.size[positions], found.mtime_ns[positions] = size, mtime
    gone = positions[size < 0]
    if len(gone):
        found.mark(gone, MISSING_STATUS, MISSING, "vanished during verification")


def _open_registry(checksum_db: Path | ChecksumRegistry | None,
                   images_dir: str) -> tuple[ChecksumRegistry | None, bool]:
    """(registry, whether we opened it and must close it)."""
    if checksum_db is None or isinstance(checksum_db, ChecksumRegistry):
        return checksum_db, False
    if is_within(images_dir, checksum_db):
        raise ConfigError(f"checksum_db {checksum_db} lies inside the images folder {images_dir}; "
                          "verification never writes there: keep the registry with the artifacts")
    return ChecksumRegistry(checksum_db), True


def run_checks(checked: np.ndarray, rows: Rows, found: Findings, config: VerifyConfig,
                images_dir: str, checksum_db: Path | ChecksumRegistry | None,
                progress: Progress | None, accept_changes: bool, listings: Listings) -> None:
    registry, owned = _open_registry(checksum_db, images_dir)
    if progress is not None:
        progress.total = len(checked)
    listing_progress = progress if config.level == "exists" else None
    try:
        in_container = rows.in_container[checked]
        _check_files_exist(checked[~in_container], rows, found, root_prefix(images_dir),
                           listings, listing_progress)
        _check_members_exist(checked[in_container], rows, found, listing_progress)
        # The registry is read after the existence check, not beside it on a thread: at 1M
        # the two together peaked at 823-887 MB (by how they happened to overlap), one after
        # the other at 795 MB, for 0.6 us per sample more
        recorded = (registry.lookup(rows.registry_keys())
                    if registry is not None and not registry.is_empty()
                    else Recorded.none(len(rows.paths)))
        present = checked[found.code[checked] == 0]
        if config.level == "decode":
            if progress is not None:
                progress.advance(len(checked) - len(present))
            _decode_all(present, rows, found, config, progress)
        else:
            _stat_files(present[recorded.known[present] & ~rows.in_container[present]], rows,
                        found)
        if registry is not None:
            _compare_with_registry(registry, recorded, present, rows, found, config.level,
                                   accept_changes)
    finally:
        if owned and registry is not None:
            registry.close()
    if progress is not None:
        progress.finish()
