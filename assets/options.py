"""Merging an asset's options: built-in defaults < datasets.yaml section < Launchpad run config."""

from __future__ import annotations

from enum import Enum
from typing import Any, Iterable

import dagster as dg

from ml.errors import ConfigError


def merged_options(defaults: dict[str, Any], section: dict[str, Any],
                   run_config: dg.Config | None, where: str) -> dict[str, Any]:
    unknown = set(section) - set(defaults)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)} in config/datasets.yaml; "
                          f"known: {sorted(defaults)}")
    out = {**defaults, **section}
    out.update({k: v for k, v in overrides(run_config).items() if k in defaults})
    return out


def overrides(run_config: dg.Config | None) -> dict[str, Any]:
    """The fields a run config sets (None: not overridden), a choice as its plain value."""
    if run_config is None:
        return {}
    return {k: v.value if isinstance(v, Enum) else v
            for k, v in run_config.model_dump().items() if v is not None}


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A run-config choice field's type: an Enum of `values` (the library's own list of them),
    which the Launchpad shows as a dropdown; merged_options hands on the chosen value."""
    return Enum(name, {value: value for value in values}, type=str)
