"""Run configs derived from the options models (ml/options.py): defaults < datasets.yaml section
< Launchpad run config, one declaration of each option."""

from __future__ import annotations

import typing
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Optional, TypeVar

import dagster as dg
from pydantic import Field, create_model

from ml.options import Options, choices_of, plain_type

O = TypeVar("O", bound=Options)


def run_config_class(model: type[Options], name: str, doc: str, leave_out: Iterable[str] = (),
                     extra: dict[str, tuple[Any, str]] | None = None) -> type[dg.Config]:
    """A Dagster Config with every field of `model` (but `leave_out`) optional and unset by
    default, its description kept, a choice as an Enum (the Launchpad's dropdown), a tuple as a
    list; `with_run_config` merges what a run sets over the dataset's section. `extra`: more
    fields, name -> (type, description)."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in leave_out:
            continue
        kind = launchpad_type(info.annotation, f"{name}_{field_name}")
        fields[field_name] = (Optional[kind], Field(default=None, description=info.description))
    for field_name, (kind, text) in (extra or {}).items():
        fields[field_name] = (Optional[kind], Field(default=None, description=text))
    return create_model(name, __base__=dg.Config, __doc__=doc, **fields)


def launchpad_type(annotation: Any, enum_name: str) -> Any:
    """The Dagster config type of an options field."""
    values = choices_of(annotation)
    if values is not None:
        return choices(enum_name, values)
    plain = plain_type(annotation)
    origin = typing.get_origin(plain)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(plain) if a is not Ellipsis]
        return list[plain_type(args[0])] if args else list
    if plain is Path:
        return str
    return plain


def with_run_config(section: O, run_config: dg.Config | None, where: str) -> O:
    """The dataset's section with what the run config sets, checked again as a whole."""
    return section.updated(overrides(run_config), where)


def overrides(run_config: dg.Config | None) -> dict[str, Any]:
    """The fields a run config sets (None: not overridden), a choice as its plain value."""
    if run_config is None:
        return {}
    return {k: v.value if isinstance(v, Enum) else v
            for k, v in run_config.model_dump().items() if v is not None}


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A run-config choice field's type: an Enum of `values` (the options model's Literal),
    which the Launchpad shows as a dropdown; `overrides` hands on the chosen value."""
    return Enum(name, {value: value for value in values}, type=str)

