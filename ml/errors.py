"""The project's own error types.

Every error a user can cause (bad config, bad file, missing path) is raised as one of these, with a
message that names the file or value and says what to do. A traceback from deep inside a library
is a bug: wrap it in one of these at the boundary where we know which file we were reading.
"""

from __future__ import annotations


class DatasetError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(DatasetError):
    """A dataset declaration or run config is wrong (unknown kind, bad value, missing key)."""


class SourceError(DatasetError):
    """A source collection cannot be read: missing root, empty dataset, bad label file."""


class ImageError(DatasetError):
    """One image cannot be used: missing, truncated, not an image, decompression bomb, ..."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"{self.path}: {reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)

    def __reduce__(self):  # survives pickling (process pools, DataLoader workers)
        return (type(self), (self.path, self.reason, self.detail))


class PathEscapeError(SourceError):
    """An identifier in a label file resolves outside the images root ('../x', absolute, symlink)."""


class FormatError(DatasetError):
    """A packed file (.rec, .idx, .tfrecord, .bin, .conf, .h5) is corrupt or not what it claims.

    Always names the file and the byte offset where reading went wrong.
    """

    def __init__(self, path: str, offset: int | None, problem: str):
        self.path = str(path)
        self.offset = offset
        self.problem = problem
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.path}{where}: {problem}")

    def __reduce__(self):  # survives pickling (process pools, DataLoader workers)
        return (type(self), (self.path, self.offset, self.problem))
