"""The one containment helper: every path that is built from data or config goes through here.

Labels, split names, identifiers and configured output paths come from users' files and YAML.
Before any of them becomes part of a path that the project writes:

- a value that comes from *data* (a COCO category, a hybrid label, a file name) is encoded into
  one safe path component (`safe_component`, `safe_components`): '/', '\\', ':', NUL and other
  control characters, a leading '.', '%' itself and trailing dots or spaces are percent-encoded,
  so '..', absolute paths and drive prefixes cannot survive; names that would collide on a
  case-insensitive disk, or after truncation, get a short hash of their raw value;
- a value that comes from *config* (a split name) is refused unless it already is a plain name
  (`check_name`): a config typo should be fixed, not silently renamed;
- the joined path is checked to lie inside the writer's own output folder, with symlinks on the
  way resolved (`contained`), and a configured output path additionally may not land on a file
  the project did not write (`check_output_file`);
- a link or copy never replaces an existing file (`link_or_copy_new`);
- an identifier a source declares (a label file's relative path) is resolved under its images
  folder (`InsideRoot`): absolute paths, '..' out of the folder and symlinks leading out are
  refused with the reason, never opened.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml.errors import ConfigError, PathEscapeError

MAX_COMPONENT_BYTES = 200        # below every common filesystem's 255-byte name limit
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_UNSAFE = set('/\\:*?"<>|%')


def _encode_char(ch: str) -> str:
    if 0xDC80 <= ord(ch) <= 0xDCFF:           # an undecodable byte kept by surrogateescape
        return f"%{ord(ch) - 0xDC00:02X}"
    if ch in _UNSAFE or ord(ch) < 0x20 or ord(ch) == 0x7F:
        return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
    return ch


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def safe_component(value: str) -> str:
    """`value` as one path component that cannot leave its folder, reversible by percent-decoding
    (apart from over-long names, which are cut and given a hash of the whole value)."""
    text = "".join(_encode_char(ch) for ch in str(value))
    if not text:
        return "%00empty"
    if text[0] == ".":
        text = "%2E" + text[1:]
    while text and text[-1] in ". ":           # Windows drops trailing dots and spaces
        text = text[:-1] + f"%{ord(text[-1]):02X}"
    if len(text.encode("utf-8")) > MAX_COMPONENT_BYTES:
        cut = text.encode("utf-8")[:MAX_COMPONENT_BYTES - 9].decode("utf-8", "ignore")
        text = f"{cut}~{_short_hash(str(value))}"
    return text


def safe_components(values: Iterable[str]) -> dict[str, str]:
    """{value: component} for a set of values (the labels of a dataset): each encoded by
    `safe_component`, and values whose components would be one folder on a case-insensitive
    disk (macOS, Windows) given `~<hash>` suffixes, so distinct values stay distinct."""
    encoded = {v: safe_component(v) for v in dict.fromkeys(values)}
    by_fold: dict[str, list[str]] = {}
    for value, comp in encoded.items():
        by_fold.setdefault(comp.casefold(), []).append(value)
    for values_here in by_fold.values():
        if len(values_here) > 1:
            for value in values_here:
                encoded[value] = f"{encoded[value]}~{_short_hash(value)}"
    return encoded


def check_name(value: object, what: str) -> str:
    """A name from config that becomes a path component (a split name): returned unchanged when
    it is a plain name (letters, digits, '_', '-', '.', not starting with '.' or '-'), else a
    ConfigError naming `what`."""
    if not isinstance(value, str) or not _PLAIN_NAME.match(value) or value in (".", ".."):
        raise ConfigError(f"{what}: {value!r} cannot be a file or folder name; use letters, digits, "
                          "'_', '-' and '.' only (no '/', '\\\\', '..', leading '.' or spaces)")
    return value


def is_inside(root: Path, candidate: Path) -> bool:
    """True when `candidate` is `root` or below it, comparing the paths as given."""
    return candidate == root or root in candidate.parents


def is_within(root: str | os.PathLike, candidate: str | os.PathLike) -> bool:
    """True when `candidate`, with symlinks resolved, is `root` or lies below it (resolved)."""
    return is_inside(Path(os.path.abspath(root)).resolve(), Path(os.path.abspath(candidate)).resolve())


def overlap(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when one of two folders is, or holds, the other (symlinks resolved)."""
    return is_within(a, b) or is_within(b, a)


def relative_name(name: str, what: str) -> str:
    """A relative path made of data (a resized image's name mirroring its source), checked
    component by component: no absolute path or drive, no '', '.' or '..' part, no NUL.
    PathEscapeError naming `what` otherwise; returned with '/' separators."""
    text = str(name).replace("\\", "/")
    parts = text.split("/")
    if not text or text.startswith("/") or "\x00" in text or ":" in parts[0] \
            or any(p in ("", ".", "..") for p in parts):
        raise PathEscapeError(f"{what} {name!r} must be a relative path inside the output folder "
                              "(no '..', no absolute path)")
    return text


# Any '', '.' or '..' component (an absolute path has an empty first one), a drive or scheme
# in the first component, or a NUL: what relative_name refuses, as one regular expression.
_NOT_RELATIVE = r"(^|/)\.{0,2}(/|$)|^[^/]*:|\x00"


def relative_names(names: Sequence[str] | pa.Array, what: str) -> pa.StringArray:
    """`relative_name` of a whole column at once (Arrow's regular expressions, no Python per
    name): the names with '/' separators, or the PathEscapeError of the first bad one."""
    if not isinstance(names, pa.Array):
        names = pa.array(np.asarray(names, dtype=object), pa.string())
    text = pc.replace_substring(names, "\\", "/")
    bad = pc.match_substring_regex(text, _NOT_RELATIVE)
    for name in names.filter(bad).to_pylist():
        relative_name(name, what)            # raises, with the one message
    return text


def contained(root: str | os.PathLike, *parts: str, what: str = "output") -> Path:
    """`root` joined with `parts`, refused (PathEscapeError) unless the result lies inside
    `root` both as written and with every symlink on the way resolved."""
    base = Path(os.path.abspath(root))
    for part in parts:
        if "\x00" in str(part):
            raise PathEscapeError(f"{what}: {part!r} holds a NUL byte; it cannot be part of a path")
    path = Path(os.path.normpath(base.joinpath(*parts)))
    if path == base or not is_inside(base, path):
        raise PathEscapeError(f"{what}: {os.path.join(*parts)!r} leads outside the output folder "
                              f"{base}; nothing is written outside an asset's own output folder")
    real_base, real = base.resolve(), path.resolve(strict=False)
    if not is_inside(real_base, real):
        raise PathEscapeError(f"{what}: {path} resolves to {real}, outside the output folder "
                              f"{real_base} (a symlink on the way); remove the link so outputs "
                              "stay inside the output folder")
    return path


def check_output_file(path: str | os.PathLike, *, output_dir: str | os.PathLike,
                      protected: Iterable[str | os.PathLike] = (), what: str,
                      ours: Callable[[Path], bool] | None = None) -> Path:
    """A configured output file (a report path): it must lie inside `output_dir`, outside every
    `protected` folder (the dataset's images), and, when something is already there, be a file
    that the project wrote (`ours(path)` says so). Returns the absolute path."""
    p = Path(os.path.abspath(path))
    try:
        contained(output_dir, os.path.relpath(p, os.path.abspath(output_dir)), what=what)
    except PathEscapeError:
        raise ConfigError(f"{what} {p} lies outside the dataset's output folder {output_dir}; "
                          "outputs are written only there: use a path under {output_dir}") from None
    for folder in protected:
        if is_within(folder, p):
            raise ConfigError(f"{what} {p} lies inside the images folder {folder}; the project "
                              "never writes among source images: choose a path under the output folder")
    if os.path.lexists(p):
        if not p.is_file() or p.is_symlink() or (ours is not None and not ours(p)):
            raise ConfigError(f"{what} {p} already exists and was not written by this project; "
                              "it is never replaced: move it away or choose another path")
    return p


def link_or_copy_new(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """A hard link to `src` at `dst` ('link'), or a copy where links fail ('copy'). Never
    replaces anything at `dst`: an existing entry is a PathEscapeError."""
    try:
        try:
            os.link(src, dst)
            return "link"
        except FileExistsError:
            raise
        except OSError:                                          # another filesystem: copy
            with open(src, "rb") as fin, open(dst, "xb") as fout:   # 'x': fails if dst exists
                shutil.copyfileobj(fin, fout, 1 << 20)
            shutil.copystat(src, dst)
            return "copy"
    except FileExistsError:
        raise PathEscapeError(f"{dst} already exists; a link or copy never replaces a file") from None


class InsideRoot:
    """Where identifiers (relative paths from a label file or a folder listing) lie under one
    images folder, decided as a string prefix test on the real path of each file's folder,
    resolved once per folder; a file that is itself a symlink is resolved on its own.

    `resolve(identifier)` returns (absolute path, '') or ('', why it is invalid). Refused:
    absolute paths and drive prefixes, '..' that climbs out of the root, names of the root
    itself, and symlinks (anywhere on the way) that resolve outside the root. The file need not
    exist (missing files are the verification's business); it is never opened here.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.normpath(os.path.abspath(root))
        self.real_root = os.path.realpath(self.root)
        self._real_folders: dict[str, str] = {}

    def _inside_real_root(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def listed(self, folder: str, name: str, is_symlink: bool) -> tuple[str, str]:
        """A file found by listing `folder` (a path relative to the root, itself no symlink:
        image-folder sources skip symlinked class folders), as `resolve` would say: a listed
        name is one plain component, so only a symlinked file is resolved."""
        if is_symlink:
            return self.resolve(f"{folder}/{name}")
        return os.path.join(self.root, folder, name), ""

    def resolve(self, identifier: str) -> tuple[str, str]:
        if not identifier or "\x00" in identifier:
            return "", "empty identifier" if not identifier else "NUL byte in identifier"
        if os.path.isabs(identifier) or identifier.startswith(("/", "\\")) or \
                (len(identifier) > 1 and identifier[1] == ":"):
            return "", "absolute path (identifiers must be relative to the images folder)"
        normalized = os.path.normpath(os.path.join(self.root, identifier))
        if not normalized.startswith(self.root.rstrip(os.sep) + os.sep):
            return "", ("'..' climbs out of the images folder" if normalized != self.root
                        else "names the images folder itself, not a file in it")
        folder, name = os.path.split(normalized)
        real_folder = self._real_folders.get(folder)
        if real_folder is None:
            real_folder = self._real_folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folder, name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        if not self._inside_real_root(real):
            return "", f"symlink resolves outside the images folder (to {real})"
        return normalized, ""
