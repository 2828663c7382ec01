"""Small datasets for asset tests, and a way to build Definitions over them in tmp_path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import yaml
from PIL import Image

from definitions import build_definitions
from ml.dataset_spec import load_datasets


def write_jpeg(path: Path, size=(96, 72), colour=(180, 90, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=90)
    return path


def make_folder_dataset(root: Path, classes=3, per_class=6) -> Path:
    for c in range(classes):
        for i in range(per_class):
            write_jpeg(root / f"class_{c}" / f"{i:02d}.jpg", size=(96 + 8 * i, 72),
                       colour=(40 * c, 20 * i, 100))
    return root


def make_pairs_dataset(root: Path, n=6) -> Path:
    for i in range(n):
        write_jpeg(root / f"{i:04d}_before.jpg", size=(120, 90), colour=(10 * i, 50, 50))
        write_jpeg(root / f"{i:04d}_after.jpg", size=(120, 90), colour=(10 * i, 90, 90))
    return root


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root: proof that sources were not touched."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def definitions_for(tmp_path: Path, datasets: list[dict]) -> dg.Definitions:
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"storage_root": str(tmp_path / "outputs"), "datasets": datasets}))
    return build_definitions(load_datasets(path))


def materialize_all(defs: dg.Definitions, instance=None, selection=None, run_config=None,
                    raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    assets = list(defs.assets)
    return dg.materialize(assets, instance=instance or dg.DagsterInstance.ephemeral(),
                          resources=defs.resources, selection=selection,
                          run_config=run_config, raise_on_error=raise_on_error)


def materialization_metadata(result: dg.ExecuteInProcessResult, key: list[str]) -> dict:
    mats = result.asset_materializations_for_node("__".join(key))
    assert mats, f"{key} was not materialized"
    return {k: v.value for k, v in mats[-1].metadata.items()}
