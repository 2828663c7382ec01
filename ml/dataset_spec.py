"""Dataset declarations: config/datasets.yaml parsed into typed specs (no Dagster here).

```yaml
storage_root: outputs            # where artifacts go; relative paths resolve against the repo root
datasets:
  - name: faces                  # asset key prefix and output folder name
    kind: hybrid                 # one of ml.sources.SOURCE_KINDS
    source: {...}                # the kind's options model (ml/sources/<kind>.py)
    on_invalid_path: skip        # identifiers escaping the images root: skip (reported) | error
    partitions: 1                # > 1: catalog, verification and resize run per partition
    resize: {...}                # ml.resize.ResizeOptions
    splits: {...}                # ml.splits.SplitSpec
    verify: {...}                # ml.verify.VerifyConfig (or seed 000's DATA.HYBRID section)
    quality: {...}               # ml.quality.issues.QualityConfig
    formats: {...}               # ml.packing.FormatsOptions: recordio, tfrecords, h5_store, ...
    train: {...}                 # ml.train.tasks.TrainSection (assets/training.py)
```

Each section is checked by its options model (ml/options.py) when the file is read, so a bad
value fails when the definitions load, naming the dataset, the section and the option.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ml.errors import ConfigError
from ml.options import Options
from ml.packing import FormatsOptions
from ml.quality.issues import QualityConfig
from ml.resize import ResizeOptions
from ml.safe_paths import overlap
from ml.partitions import check_partition_count
from ml.sources import SOURCE_KINDS
from ml.splits import SplitSpec
from ml.train.tasks import TrainSection
from ml.verify import VerifyConfig

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# A section's options model; `verify` also takes a seed-000 config (VerifyConfig.of_section).
SECTIONS: dict[str, type[Options]] = {
    "resize": ResizeOptions, "splits": SplitSpec, "verify": VerifyConfig,
    "quality": QualityConfig, "formats": FormatsOptions, "train": TrainSection}


def section_where(dataset: str, section: str) -> str:
    """How an error names a dataset's section: "dataset 'faces': resize"."""
    return f"dataset {dataset!r}: {section}"


def repo_root() -> Path:
    """The checkout root: IMAGEDS_ROOT if set (the Makefile sets it), else this file's parent's parent."""
    env = os.environ.get("IMAGEDS_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    source: Options                            # the kind's options model (ml/sources/<kind>.py)
    output_dir: Path
    base_dir: Path
    on_invalid_path: str = "skip"
    partitions: int = 1
    resize: ResizeOptions = field(default_factory=ResizeOptions)
    splits: SplitSpec = field(default_factory=SplitSpec)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    formats: FormatsOptions = field(default_factory=FormatsOptions)
    train: TrainSection | None = None          # no section: the dataset is not trained on
    description: str = ""

    def where(self, section: str) -> str:
        return section_where(self.name, section)

    def source_path(self, key: str) -> Path:
        """A path option of the source, resolved against the datasets file's base folder."""
        p = Path(os.path.expanduser(str(getattr(self.source, key))))   # the model requires it
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def images_location(self) -> Path:
        """The folder (or container file) holding the dataset's source images."""
        return self.source_path(SOURCE_KINDS[self.kind].images_option)


@dataclass(frozen=True)
class DatasetsFile:
    path: Path
    storage_root: Path
    datasets: tuple[DatasetSpec, ...]

    def get(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise ConfigError(f"no dataset named {name!r} in {self.path}; "
                          f"declared: {', '.join(d.name for d in self.datasets)}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
    return dict(value)


def parse_datasets(doc: Any, path: Path, base_dir: Path | None = None) -> DatasetsFile:
    where = str(path)
    if not isinstance(doc, dict) or "datasets" not in doc:
        raise ConfigError(f"{where}: expected a mapping with a 'datasets:' list")
    base = (base_dir or repo_root()).resolve()
    storage = Path(str(doc.get("storage_root", "outputs")))
    storage = storage if storage.is_absolute() else base / storage
    entries = doc["datasets"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: 'datasets' must be a non-empty list")
    specs: list[DatasetSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        entry = _mapping(entry, f"{where}: datasets[{i}]")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"{where}: datasets[{i}].name {name!r} must start with a letter and "
                              "hold only letters, digits and underscores (it becomes an asset key)")
        if name in seen:
            raise ConfigError(f"{where}: dataset name {name!r} is declared twice")
        seen.add(name)
        kind = entry.get("kind")
        if kind not in SOURCE_KINDS:
            raise ConfigError(f"{where}: dataset {name!r} has unknown source kind {kind!r}; "
                              f"use one of: {', '.join(SOURCE_KINDS)}")
        unknown = set(entry) - {"name", "kind", "source", "output_dir", "on_invalid_path",
                                "partitions", "shards", "description", *SECTIONS}
        if unknown:
            raise ConfigError(f"{where}: dataset {name!r} has unknown keys {sorted(unknown)}")
        if "partitions" in entry and "shards" in entry:
            raise ConfigError(f"{where}: dataset {name!r} sets both partitions and shards (the "
                              "older name of partitions); keep partitions")
        on_invalid = entry.get("on_invalid_path", "skip")
        if on_invalid not in ("skip", "error"):
            raise ConfigError(f"{where}: dataset {name!r}: on_invalid_path must be 'skip' or "
                              f"'error', got {on_invalid!r}")
        out = entry.get("output_dir")
        out_path = (Path(out) if Path(str(out)).is_absolute() else base / str(out)) if out \
            else storage / name
        specs.append(DatasetSpec(
            name=name, kind=kind,
            source=SOURCE_KINDS[kind].options.parse(entry.get("source"),
                                                    section_where(name, "source")),
            output_dir=out_path, base_dir=base, on_invalid_path=on_invalid,
            partitions=check_partition_count(entry.get("partitions", entry.get("shards", 1)),
                                             f"{where}: dataset {name!r}"),
            description=str(entry.get("description", "")),
            **_sections(entry, name, base),
        ))
    _check_output_folders(where, storage, specs)
    return DatasetsFile(path=path, storage_root=storage, datasets=tuple(specs))


def documented_options() -> dict[str, type[Options]]:
    """Each section's model (each source kind's and packed format's too) by the name its README
    table carries."""
    formats = {f"formats.{name}": FormatsOptions.model_fields[name].annotation
               for name in FormatsOptions.model_fields}
    from ml.train.tasks import TASKS       # a task's model lives in its trainer (torch)
    return {**{f"source.{name}": kind.options for name, kind in SOURCE_KINDS.items()},
            **{k: v for k, v in SECTIONS.items() if k != "formats"},
            **{k: _optional_model(v) for k, v in formats.items()},
            **{f"train.{name}": task.options() for name, task in TASKS.items()}}


def _optional_model(annotation: Any) -> type[Options]:
    return next(a for a in (annotation, *typing.get_args(annotation))
                if isinstance(a, type) and issubclass(a, Options))


def _sections(entry: dict[str, Any], name: str, base: Path) -> dict[str, Any]:
    """The entry's sections, each checked by its options model (an absent train: stays None)."""
    out: dict[str, Any] = {}
    for section, model in SECTIONS.items():
        values = entry.get(section)
        if section == "train" and values is None:
            continue
        where = section_where(name, section)
        if section == "verify":
            out[section] = VerifyConfig.of_section(values or {}, base, where)
        else:
            out[section] = model.parse(values, where)
    return out


def _check_output_folders(where: str, storage: Path, specs: list[DatasetSpec]) -> None:
    """Each dataset writes only into its own output folder: a folder that is a file, shared with
    another dataset, or overlapping the dataset's images would mix or overwrite files."""
    if storage.exists() and not storage.is_dir():
        raise ConfigError(f"{where}: storage_root {storage} is a file, not a folder; point "
                          "storage_root at a folder (it is created when missing)")
    for i, spec in enumerate(specs):
        if spec.output_dir.exists() and not spec.output_dir.is_dir():
            raise ConfigError(f"{where}: dataset {spec.name!r}: output folder {spec.output_dir} "
                              "is a file; set output_dir to a folder")
        for other in specs[:i]:
            if overlap(spec.output_dir, other.output_dir):
                raise ConfigError(f"{where}: datasets {other.name!r} and {spec.name!r} share the "
                                  f"output folder {spec.output_dir} (or one holds the other); give "
                                  "each dataset its own output_dir")
        images = spec.images_location
        if overlap(spec.output_dir, images):
            raise ConfigError(f"{where}: dataset {spec.name!r}: output folder {spec.output_dir} and "
                              f"the images at {images} overlap; outputs never go among the source "
                              "images: choose an output_dir outside them")


def load_datasets(path: str | os.PathLike | None = None) -> DatasetsFile:
    """Read config/datasets.yaml (or IMAGEDS_DATASETS, or `path`)."""
    p = Path(path or os.environ.get("IMAGEDS_DATASETS") or repo_root() / "config" / "datasets.yaml")
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"datasets file {p} does not exist; create it (see README, "
                          "'Declaring a dataset') or set IMAGEDS_DATASETS") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from None
    return parse_datasets(doc, p)
