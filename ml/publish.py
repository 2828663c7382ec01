"""Publishing a folder of files (a packed format: shards, indexes, property) as one unit.

A packed artifact is several files that are only right together: a re-pack that dies half-way
must not leave new test shards beside old train shards. So an artifact folder is never written
in place:

    outputs/faces/.recordio.tmp-<host>-<pid>-<rand>/   built here (a temporary sibling)
    outputs/faces/.recordio.v-<time>-<rand>/          renamed to an immutable version when complete
    outputs/faces/recordio -> .recordio.v-<time>-<rand>   a symlink, swapped atomically (rename)

Every path a reader sees through `recordio/` belongs to one complete version, at every instant.
Handles (ml/formats/handles.py) name the version folder itself, so a handle and the files it
describes always agree: the IO manager writes the handle (the commit point) and only then
removes the versions no handle refers to (`prune_versions`). A crash at any point leaves the
old handle with the old version, or the new handle with the new one; temporaries of killed
builds are removed by the next build of the same artifact (`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

from ml.atomic import fsync_dir, remove_stale_temps, temp_sibling
from ml.errors import DatasetError

VERSION_TAG = ".v-"
_VERSION_NAME = re.compile(r"^\.(?P<name>.+)\.v-[0-9TZ]+-[0-9a-f]{8}$")


@dataclass
class DirBuild:
    """A folder being built: write under `path`; after the block, `published` is the version
    folder the files now live in (and `final` points at it)."""

    final: Path
    path: Path
    published: Path | None = None

    def rebase(self, p: str | os.PathLike) -> Path:
        """Where a file written under `path` lives once published."""
        if self.published is None:
            raise RuntimeError("the folder is not published yet")
        return self.published / Path(p).relative_to(self.path)


def version_name(final: Path) -> str:
    return f".{final.name}{VERSION_TAG}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


def versions_of(final: str | os.PathLike) -> list[Path]:
    """Every published version folder of `final`, oldest first."""
    final = Path(final)
    try:
        names = os.listdir(final.parent)
    except FileNotFoundError:
        return []
    return sorted(final.parent / n for n in names
                  if (m := _VERSION_NAME.match(n)) and m["name"] == final.name)


def current_version(final: str | os.PathLike) -> Path | None:
    """The version folder `final` points at (None when nothing is published yet)."""
    final = Path(final)
    if not final.is_symlink():
        return None
    return final.parent / os.readlink(final)


@contextlib.contextmanager
def publish_dir(final: str | os.PathLike, *, keep_previous: bool = False) -> Iterator[DirBuild]:
    """Build a folder in a temporary sibling; on success make it a version and point `final`
    at it with one atomic rename. On an exception the temporary folder is removed and `final`
    is untouched.

    `keep_previous=False` removes the other versions right after the swap (nothing refers to
    them); `True` keeps them for `prune_versions`, called once the new version is recorded
    (a handle written), so that a crash in between leaves the recorded version readable.
    """
    final = Path(os.path.abspath(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_symlink() and not final.is_dir():
        raise DatasetError(f"{final} is a file where a published folder belongs; it is never "
                           "replaced: move it away and run again")
    remove_stale_temps(final)
    tmp = temp_sibling(final)
    tmp.mkdir()
    build = DirBuild(final=final, path=tmp)
    try:
        yield build
        fsync_dir(tmp)
        version = final.with_name(version_name(final))
        os.rename(tmp, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point(final, version)
    build.published = version
    if not keep_previous:
        prune_versions(final, keep=version)


def _point(final: Path, version: Path) -> None:
    """Make `final` a symlink to `version` atomically (a folder from before versions existed
    becomes a version first, so it is pruned like any other)."""
    if final.exists() and not final.is_symlink():
        os.rename(final, final.with_name(version_name(final)))
    link = temp_sibling(final)
    os.symlink(version.name, link)
    try:
        os.replace(link, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        raise
    fsync_dir(final.parent)


def prune_versions(final: str | os.PathLike, keep: str | os.PathLike) -> list[Path]:
    """Remove the versions of `final` other than `keep` and the one `final` points at."""
    final = Path(final)
    keep_names = {Path(keep).name}
    current = current_version(final)
    if current is not None:
        keep_names.add(current.name)
    removed = []
    for version in versions_of(final):
        if version.name not in keep_names:
            shutil.rmtree(version, ignore_errors=True)
            removed.append(version)
    return removed


def version_of(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """(final, version) when `path` lies in a published version folder, else None."""
    p = Path(path)
    for folder in (p, *p.parents):
        match = _VERSION_NAME.match(folder.name)
        if match:
            return folder.parent / match["name"], folder
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def prune_for(record: Any) -> list[Path]:
    """After `record` (a handle dataclass) is written: remove the versions of every published
    folder its path fields lie in, except the ones it names."""
    found = {version_of(v) for f in fields(record) for v in _strings(getattr(record, f.name))
             if os.sep in v}
    removed: list[Path] = []
    for final_and_version in sorted(f for f in found if f is not None):
        removed += prune_versions(*final_and_version)
    return removed
