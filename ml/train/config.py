"""Task options: one options model per task (ml/options.py), filled from one YAML section plus
`key=value` overrides (`Config.parse(values, where)`).

Unknown keys and values of the wrong type or out of bounds are ConfigErrors that name the file,
section and key. What every task has (seed, device, precision, the optimizer) is declared here
once; each task's model adds its own options and its own defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field

from ml.errors import ConfigError
from ml.options import Bool, Float, Int, Options
from ml.train.tasks import DEVICES

OPTIMIZERS = ("adamw", "sgd")
Epochs = Annotated[Int, Field(ge=1, description="Epochs to train")]
BatchSize = Annotated[Int, Field(ge=1, description="Samples per step and process")]
Count = Annotated[Int, Field(ge=0)]
Rate = Annotated[Float, Field(ge=0.0)]
Fraction = Annotated[Float, Field(ge=0.0, le=1.0)]
Optimizer = Annotated[Literal[OPTIMIZERS], Field(description="adamw, or sgd (Nesterov momentum)")]
Workers = Annotated[Int, Field(ge=0, description="DataLoader worker processes per trainer process")]


class TaskOptions(Options):
    """What every task's options have."""

    seed: Int = Field(0, description="Seed of every random draw (data order, augmentation, init)")
    device: Literal[DEVICES] = Field("auto", description="auto (cuda when present), cpu or cuda")
    amp: Bool = Field(True, description="bf16 autocast on CUDA (CPU trains in float32)")
    channels_last: Bool = Field(True, description="channels-last memory layout on CUDA")


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
