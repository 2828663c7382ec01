"""Task configs: a dataclass per task, filled from one YAML section plus `key=value` overrides.

Unknown keys and values of the wrong type are ConfigErrors that name the file, section and key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ml.errors import ConfigError

T = TypeVar("T")


def load_section(path: str | Path | None, section: str) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config {path} does not exist; pass --config with a YAML "
                          "file such as config/train.yaml")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of task name -> options")
    body = doc.get(section) or {}
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: section {section!r} must be a mapping of options")
    return body


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """['epochs=3', 'lr=0.1'] -> {'epochs': 3, 'lr': 0.1} (values parsed as YAML scalars)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def build_config(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate dataclass `cls` from `values`, coercing ints/floats and checking every key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where) if len(args) == 1 else value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, str):          # YAML 1.1 reads `1e-3` as text
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return origin(value)
    return value
