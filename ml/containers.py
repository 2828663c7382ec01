"""Images stored inside container files: an HDF5 image store (member = dataset key) or an
MXNet RecordIO file (member = record key). One place opens containers, read-only and once
per process (a handle never crosses a fork), for the catalog, verification and resizing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ml.errors import FormatError, ImageError
from ml.imageio import MISSING, NOT_AN_IMAGE, UNSUPPORTED

_local = threading.local()


def is_recordio(path: str | os.PathLike) -> bool:
    return str(path).endswith(".rec")


def _open(path: str):
    """The process-local open container for `path` (reopened after fork)."""
    cache = getattr(_local, "cache", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():
        cache = _local.cache = {}
        _local.pid = os.getpid()
    if path not in cache:
        try:
            if is_recordio(path):
                from ml.formats.recordio import RecordIOReader
                cache[path] = RecordIOReader(path)
            else:
                import h5py
                cache[path] = h5py.File(path, "r")
        except FileNotFoundError:
            raise ImageError(path, MISSING, "the container file does not exist") from None
        except (OSError, FormatError) as exc:
            raise ImageError(path, UNSUPPORTED, f"cannot open the container: {exc}") from None
    return cache[path]


def member_keys(path: str | os.PathLike) -> set[str]:
    """Every member key of a container (one listing, no image read)."""
    path = str(path)
    if is_recordio(path):
        return {str(int(k)) for k in _open(path).keys}
    import h5py
    keys: set[str] = set()
    _open(path).visititems(lambda n, o: keys.add(n) if isinstance(o, h5py.Dataset) else None)
    return keys


def read_member(path: str | os.PathLike, member: str) -> bytes:
    """The encoded image bytes of one member; ImageError(MISSING) when it is not there."""
    path, member = str(path), member.strip("/")
    label = f"{path}:{member}"
    if not Path(path).exists():
        raise ImageError(label, MISSING, "the container file does not exist")
    try:
        container = _open(path)
    except ImageError as exc:
        raise ImageError(label, exc.reason, exc.detail) from None
    if is_recordio(path):
        try:
            return container.read_unpacked(int(member))[1]
        except (KeyError, ValueError):
            raise ImageError(label, MISSING, f"no record {member!r} in the .idx") from None
        except FormatError as exc:
            raise ImageError(label, NOT_AN_IMAGE, str(exc)) from None
    import h5py
    import numpy as np
    obj = container.get(member)
    if obj is None:
        raise ImageError(label, MISSING, f"no member {member!r} in the container")
    if not isinstance(obj, h5py.Dataset):
        raise ImageError(label, NOT_AN_IMAGE, f"{member!r} is a group, not image bytes")
    value = obj[()]
    if isinstance(value, bytes):
        return value
    if isinstance(value, np.void) or (isinstance(value, np.ndarray) and value.dtype == np.uint8):
        return value.tobytes()
    raise ImageError(label, UNSUPPORTED, f"{member!r} holds "
                     f"{getattr(value, 'dtype', type(value).__name__)}, not encoded image bytes (uint8)")


def close_all() -> None:
    for handle in getattr(_local, "cache", {}).values():
        handle.close()
    _local.cache = {}
