"""Print where the prepare and train jobs' outputs, reports, models and the UI are (the end of
`make demo`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ml.dataset_spec import load_datasets
from ml.formats.handles import CheckpointHandle, Handle
from ml.splits import CLASS_COUNTS_NAME

# the figures printed per trained model, when its summary has them
MODEL_FIGURES = ("val_accuracy", "raw_pixel_accuracy", "knn_accuracy", "knn_accuracy_random_init",
                 "mean_class_accuracy", "majority_class_accuracy", "test_psnr_db",
                 "identity_psnr_db")


def summarize(outputs: Path | None = None) -> str:
    datasets = load_datasets()
    root = Path(outputs) if outputs else datasets.storage_root
    lines = [f"Outputs under {root}", ""]
    for d in datasets.datasets:
        lines.append(f"[{d.name}] ({d.kind})")
        out_dir = root / d.name if outputs else d.output_dir
        cat = root / d.name / "catalog.parquet"
        if not cat.exists():
            lines.append("  not materialized yet")
            continue
        frame = pd.read_parquet(cat)
        lines.append(f"  catalog:  {len(frame)} samples, {frame['label'].nunique()} labels  ({cat})")
        report = out_dir / "assets" / "missing_images_report.json"
        if report.exists():
            r = json.loads(report.read_text())
            lines.append(f"  verified: {r['total_images_checked']} checked, {r['missing_count']} "
                         f"missing, {r.get('corrupt_count', 0)} corrupt, "
                         f"passed={r.get('passed')}  ({report})")
        resized = out_dir / "resized"
        if resized.exists():
            n = sum(1 for p in resized.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(resized).parts))  # no manifest
            lines.append(f"  resized:  {n} images  ({resized})")
        splits = out_dir / "splits"
        counts = {p.stem: len(pd.read_parquet(p)) for p in sorted(splits.glob("*.parquet"))
                  if p.name != CLASS_COUNTS_NAME}                  # samples per split only
        if counts:
            lines.append(f"  splits:   {counts}  ({splits})")
        for handle_file in sorted((root / d.name).glob("*.handle.json")):
            handle = Handle.from_json(handle_file.read_text())
            if isinstance(handle, CheckpointHandle):
                lines.append(f"  model:    {handle.task}, {model_figures(handle.summary)}  "
                             f"({handle.checkpoint})")
                continue
            where = getattr(handle, "rec_path", None) or getattr(handle, "path", None) \
                or getattr(handle, "out_dir", "")
            lines.append(f"  {handle_file.name.split('.')[0] + ':':9} {type(handle).__name__} "
                         f"({where})")
    lines += ["", "Web UI: `make ui`, then open http://127.0.0.1:3000 (asset graph, metadata, runs)."]
    return "\n".join(lines)


def model_figures(summary: dict) -> str:
    shown = [f"{k}={summary[k]:.3f}" for k in MODEL_FIGURES
             if isinstance(summary.get(k), (int, float))]
    return ", ".join(shown) or "no figures reported"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outputs", type=Path, default=None)
    print(summarize(parser.parse_args().outputs))


if __name__ == "__main__":
    main()
