"""im2rec's `.lst` image lists: read, written, and packed into RecordIO as im2rec --pass-through.

A line is `index \\t label [\\t label ...] \\t path \\n` (mxnet tools/im2rec.py): the first column
an integer index (it becomes the record's key and IRHeader id), the middle columns float labels,
the last column the image path relative to the image root. im2rec writes labels with '%f'
(6 decimals) and we do the same, so our lists are byte-identical to its own. On reading, im2rec
strips whitespace around every column and skips malformed lines with a printed warning; we
skip only blank lines and raise SourceError naming the file and line for anything else.

Packing follows im2rec's pass-through mode: the image file's bytes unchanged, IRHeader
(0, label, index, 0) with the first label, or with `pack_label=True` and several labels the
whole label list as a float32 array (flag = its length), written with `write_idx(index, ...)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ml.atomic import atomic_write_text
from ml.errors import ImageError, PathEscapeError, SourceError
from ml.file_bytes import read_file_bytes
from ml.formats.recordio import IRHeader, RecordIOWriter
from ml.progress import Progress
from ml.safe_paths import InsideRoot

LST_FORBIDDEN = ("\t", "\n", "\r")


@dataclass(frozen=True)
class LstEntry:
    """One .lst line: integer index, float labels (at least one), relative image path."""

    index: int
    labels: tuple[float, ...]
    path: str


def _parse_line(line: str) -> LstEntry:
    fields = [field.strip() for field in line.strip().split("\t")]
    if len(fields) < 3:
        raise ValueError(f"{len(fields)} tab-separated columns, at least 3 needed "
                         "(index, label, path)")
    return LstEntry(int(fields[0]), tuple(float(v) for v in fields[1:-1]), fields[-1])


def read_lst(path: str | os.PathLike) -> list[LstEntry]:
    """Every entry of a .lst file, in file order; indices must be unique."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read image list ({exc}); expected a UTF-8 text "
                          "file of 'index<TAB>label<TAB>path' lines") from exc
    entries: list[LstEntry] = []
    first_line_of: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = _parse_line(line)
        except ValueError as exc:
            raise SourceError(f"{path}:{number}: bad .lst line {line[:80]!r} ({exc}); expected "
                              "'index<TAB>label[<TAB>label...]<TAB>path'") from None
        if entry.index in first_line_of:
            raise SourceError(f"{path}:{number}: index {entry.index} already used on line "
                              f"{first_line_of[entry.index]}; indices become record keys and "
                              "must be unique")
        first_line_of[entry.index] = number
        entries.append(entry)
    return entries


def format_lst_line(entry: LstEntry) -> str:
    """The line im2rec's write_list would write for `entry`."""
    if not entry.labels:
        raise ValueError(f"entry {entry.index} ({entry.path!r}) has no label; im2rec needs one")
    if not entry.path or entry.path != entry.path.strip() or \
            any(c in entry.path for c in LST_FORBIDDEN):
        raise ValueError(f"path {entry.path!r} cannot be written to a .lst (empty, surrounding "
                         "whitespace, tab or newline)")
    return "%d\t" % entry.index + "".join("%f\t" % v for v in entry.labels) + entry.path + "\n"


def write_lst(path: str | os.PathLike, entries: Iterable[LstEntry]) -> int:
    """Write entries as a .lst file atomically; return the number of lines."""
    lines = [format_lst_line(entry) for entry in entries]
    atomic_write_text(path, "".join(lines))
    return len(lines)


def _image_path(image_root: InsideRoot, lst_path: Path, entry: LstEntry) -> str:
    resolved, why = image_root.resolve(entry.path)
    if not resolved:
        raise PathEscapeError(f"{lst_path}: entry {entry.index} path {entry.path!r} is refused: "
                              f"{why}")
    return resolved


def pack_lst(lst_path: str | os.PathLike, image_root: str | os.PathLike,
             rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None,
             *, pack_label: bool = False, progress: Progress | None = None) -> int:
    """Pack the images a .lst lists into .rec (+ .idx) like `im2rec --pass-through`.

    Returns the number of records. The image files are read, never modified.
    """
    lst_path, image_root = Path(lst_path), Path(image_root)
    inside = InsideRoot(image_root)
    entries = read_lst(lst_path)
    if progress is not None:
        progress.total = len(entries)
    with RecordIOWriter(rec_path, idx_path) as writer:
        for entry in entries:
            image_path = _image_path(inside, lst_path, entry)
            try:
                payload = read_file_bytes(image_path)
            except OSError as exc:
                raise ImageError(image_path, "cannot be read", exc.strerror or str(exc)) from exc
            label = list(entry.labels) if pack_label and len(entry.labels) > 1 else entry.labels[0]
            writer.write_packed(entry.index, IRHeader(0, label, entry.index, 0), payload)
            if progress is not None:
                progress.advance()
    if progress is not None:
        progress.finish()
    return len(entries)
