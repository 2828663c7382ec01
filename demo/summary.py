"""Print what `make demo` made and where to look: per dataset the samples, what verification
found, the splits, the packed formats, each model's figures against its baseline, the pictures
worth opening, then TensorBoard, the full log and the web UI (the end of `make demo`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ml.dataset_spec import load_datasets
from ml.formats.handles import CheckpointHandle, Handle
from ml.quality.report import QUALITY_FOLDER
from ml.splits import CLASS_COUNTS_NAME
from ml.train.gate import GATES

DEMO_LOG = "demo.log"          # under the outputs folder: every event of the demo's runs

# what a packed artifact is, in words (by handle kind)
PACKED = {"recordio": "insightface RecordIO", "tfrecords": "TFRecord shards",
          "h5_store": "HDF5 store (solo-learn layout)", "memfile": "validation pairs memfile"}

# pictures worth opening, relative to a dataset's output folder
PICTURES = {
    "assets/corrupt_images.png": "what of each corrupt image still decodes",
    "splits/thumbnails.png": "thumbnails of each split",
    "splits/class_balance.png": "samples per class and split",
    "augmented_samples/augmented_samples.png": "training samples as the trainer sees them",
}


def _count(handle: Handle) -> str:
    records = getattr(handle, "records", None)
    counts = [f"{sum(records.values()):,} records"] if isinstance(records, dict) else []
    counts += [f"{getattr(handle, name):,} {word}" for name, word in
              (("num_images", "images"), ("num_sequences", "sequences"),
               ("num_pairs", "pairs"), ("num_classes", "classes")) if hasattr(handle, name)]
    return ", ".join(counts)


def _where(handle: Handle) -> str:
    return getattr(handle, "rec_path", None) or getattr(handle, "path", None) \
        or getattr(handle, "out_dir", "")


def summarize(outputs: Path | None = None) -> str:
    datasets = load_datasets()
    root = Path(outputs) if outputs else datasets.storage_root
    lines = [f"Outputs under {root}", ""]
    for d in datasets.datasets:
        lines.append(f"[{d.name}] ({d.kind})")
        out_dir = root / d.name if outputs else d.output_dir
        cat = out_dir / "catalog.parquet"
        if not cat.exists():
            lines.append("  not materialized yet")
            continue
        frame = pd.read_parquet(cat, columns=["label"])
        lines.append(f"  samples:  {len(frame):,} ({frame['label'].nunique():,} labels)")
        report = out_dir / "assets" / "missing_images_report.json"
        if report.exists():
            r = json.loads(report.read_text())
            verdict = "passed" if r.get("passed") else "FAILED"
            lines.append(f"  verified: {r['total_images_checked']:,} checked, {r['missing_count']} "
                         f"missing, {r.get('corrupt_count', 0)} corrupt: {verdict}  ({report})")
        resized = out_dir / "resized"
        if resized.exists():
            n = sum(1 for p in resized.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(resized).parts))  # no manifest
            lines.append(f"  resized:  {n:,} images  ({resized})")
        splits = out_dir / "splits"
        counts = {p.stem: len(pd.read_parquet(p, columns=[])) for p in
                  sorted(splits.glob("*.parquet")) if p.name != CLASS_COUNTS_NAME}
        if counts:
            lines.append("  splits:   " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
                         + f"  ({splits})")
        models = []
        for handle_file in sorted(out_dir.glob("*.handle.json")):
            handle = Handle.from_json(handle_file.read_text())
            if isinstance(handle, CheckpointHandle):
                models.append(handle)
            else:
                lines.append(f"  packed:   {PACKED.get(handle.kind, handle.kind)}, "
                             f"{_count(handle)}  ({_where(handle)})")
        margin = d.train.gate_margin if d.train is not None else None
        for model in models:
            lines.append(f"  model:    {model.task}: {model_figures(model.task, model.summary, margin)}")
            card = Path(model.out_dir) / "MODEL_CARD.md"
            if card.is_file():
                lines.append(f"            card: {card}")
            pictures = sorted(Path(model.out_dir).glob("*.png"))
            if pictures:
                lines.append(f"            pictures: {', '.join(p.name for p in pictures)} "
                             f"in {model.out_dir}")
        for relative, what in PICTURES.items():
            if (out_dir / relative).is_file():
                lines.append(f"  picture:  {what}: {out_dir / relative}")
        galleries = sorted((out_dir / QUALITY_FOLDER).glob("*.png"))
        if galleries:
            lines.append(f"  quality:  worst images per issue and duplicate pairs: "
                         f"{', '.join(p.name for p in galleries)} in {out_dir / QUALITY_FOLDER}")
    log = root / DEMO_LOG
    lines += ["",
              "TensorBoard: `make tensorboard`, then open http://127.0.0.1:6006 (every model's "
              "curves, inputs and pictures).",
              "Web UI: `make ui`, then open http://127.0.0.1:3000 (asset graph, metadata, checks, "
              "runs, the models' live figures)."]
    if log.is_file():
        lines.append(f"Full log of the demo's runs: {log}")
    return "\n".join(lines)


def model_figures(task: str, summary: dict, margin: float | None = None) -> str:
    """'val_accuracy 0.930 against raw_pixel_accuracy 0.590 (quality gate passed)'."""
    gate = GATES.get(task)
    if gate is None or gate.figure not in summary:
        return "no figures reported"
    verdict = gate.judge(summary, margin)
    return (f"{gate.figure} {verdict.figure:.3f} against {gate.baseline} {verdict.baseline:.3f} "
            f"(quality gate {'passed' if verdict.passed else 'FAILED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outputs", type=Path, default=None)
    print(summarize(parser.parse_args().outputs))


if __name__ == "__main__":
    main()
