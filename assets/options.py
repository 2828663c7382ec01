"""Merging an asset's options: built-in defaults < datasets.yaml section < Launchpad run config."""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml.errors import ConfigError


def merged_options(defaults: dict[str, Any], section: dict[str, Any],
                   run_config: dg.Config | None, where: str) -> dict[str, Any]:
    unknown = set(section) - set(defaults)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)} in config/datasets.yaml; "
                          f"known: {sorted(defaults)}")
    out = {**defaults, **section}
    if run_config is not None:
        out.update({k: v for k, v in run_config.model_dump().items()
                    if v is not None and k in defaults})
    return out
