"""Resolving a task's inputs: handle JSON files (what the IO manager writes) or plain paths."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from ml.errors import ConfigError, SourceError
from ml.formats.handles import Handle

H = TypeVar("H", bound=Handle)


def input_handle(inputs: dict[str, str], name: str, kind: type[H]) -> H:
    """The handle named `name` (a *.handle.json path), checked to be a `kind`."""
    path = Path(_required(inputs, name))
    if not path.is_file():
        raise SourceError(f"input {name!r}: {path} does not exist; materialize the asset that "
                          "writes it (the prepare job) or pass the right --input path")
    handle = Handle.from_json(path.read_text())
    if not isinstance(handle, kind):
        raise ConfigError(f"input {name!r} ({path}) holds a {type(handle).__name__}, "
                          f"expected a {kind.__name__}")
    return handle


def input_path(inputs: dict[str, str], name: str) -> Path:
    path = Path(_required(inputs, name))
    if not path.exists():
        raise SourceError(f"input {name!r}: {path} does not exist; materialize the asset that "
                          "writes it or pass the right --input path")
    return path


def _required(inputs: dict[str, str], name: str) -> str:
    if name not in inputs:
        raise ConfigError(f"missing input {name!r}: pass --input {name}=PATH "
                          f"(given: {sorted(inputs) or 'none'})")
    return inputs[name]
