"""What a run's checkpoints were trained on: a fingerprint of the inputs and of the config.

Resuming is only right when the checkpoints come from the same data and the same options: a
re-packed .rec with one image fewer, or another learning rate, is a different training run. So
the checkpoints folder records the fingerprint of the run that writes it
(`checkpoints/fingerprint.json`, and each checkpoint's `extra`, which is what counts when
present), and before training
`prepare_checkpoints` compares it with this run's: on any difference, or when `fresh` is asked,
the old checkpoints are moved aside to `checkpoints.previous/` (the one before that is removed)
and training starts from scratch, with the reason logged.

Inputs are fingerprinted by content, not by where they live: a handle by its fields other than
paths (counts, classes and the sha256 of the packed bytes), so re-packing the same data gives the
same fingerprint; a plain file by its sha256; a folder by its listing (names, sizes, mtimes).
Options that do not change what is learned (device, workers, how often to evaluate) are left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ml.atomic import atomic_write_text
from ml.checksums import files_sha256
from ml.errors import FormatError
from ml.formats.handles import Handle

FINGERPRINT_NAME = "fingerprint.json"
PREVIOUS_SUFFIX = ".previous"
NOT_LEARNED = frozenset({"device", "num_workers", "eval_every", "eval_batch_pairs"})
_PATH_FIELDS = ("path", "_path", "out_dir", "shards")


def _handle_fingerprint(handle: Handle) -> str:
    fields = {f.name: getattr(handle, f.name) for f in dataclasses.fields(handle)
              if not f.name.endswith(_PATH_FIELDS)}
    text = json.dumps({"kind": handle.kind, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def input_fingerprint(path: str | os.PathLike) -> str:
    """One input (a handle JSON, a file or a folder) by its content."""
    p = Path(path)
    if p.is_dir():
        listing = sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                         for f in p.rglob("*") if f.is_file())
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    if p.name.endswith(".handle.json"):
        return _handle_fingerprint(Handle.from_json(p.read_text()))
    return files_sha256([p])


def run_fingerprint(config: Any, inputs: dict[str, str]) -> dict[str, Any]:
    """{"inputs": {name: digest}, "config": {option: value}} of one training run."""
    options = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {"inputs": {name: input_fingerprint(path) for name, path in sorted(inputs.items())},
            "config": {k: v for k, v in sorted(options.items()) if k not in NOT_LEARNED}}


def why_not_resume(stored: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """Why checkpoints with fingerprint `stored` may not be resumed by a run with `current`."""
    if stored is None:
        return "the checkpoints record no fingerprint of their inputs and config"
    changed = sorted(k for k in set(stored.get("inputs", {})) | set(current["inputs"])
                     if stored.get("inputs", {}).get(k) != current["inputs"].get(k))
    if changed:
        return f"the inputs changed since they were written: {', '.join(changed)}"
    old, new = stored.get("config", {}), current["config"]
    options = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if options:
        shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in options[:6])
        return f"the training config changed since they were written: {shown}"
    return None


def prepare_checkpoints(folder: str | os.PathLike, fingerprint: dict[str, Any], *,
                        fresh: bool = False) -> str | None:
    """Make `folder` hold only checkpoints this run may resume from. Returns why training
    starts fresh although checkpoints existed (None when it may resume, or there were none)."""
    from ml.train.checkpoint import list_checkpoints

    folder = Path(folder)
    stored_path = folder / FINGERPRINT_NAME
    has_checkpoints = bool(list_checkpoints(folder))
    reason = None
    if has_checkpoints:
        stored = recorded_fingerprint(folder)
        reason = "fresh: true was asked" if fresh else why_not_resume(stored, fingerprint)
        if reason is not None:
            previous = folder.with_name(folder.name + PREVIOUS_SUFFIX)
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(folder, previous)
    folder.mkdir(parents=True, exist_ok=True)
    if reason is not None or not has_checkpoints:
        atomic_write_text(stored_path, json.dumps(fingerprint, indent=1, default=str))
    return reason


def stored_fingerprint(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The fingerprint of the run writing `folder` (its fingerprint.json)."""
    path = Path(folder) / FINGERPRINT_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def recorded_fingerprint(folder: str | os.PathLike) -> dict[str, Any] | None:
    """What the newest checkpoint in `folder` was trained on: the fingerprint it carries (a
    checkpoint copied alone still knows), else the folder's fingerprint.json, else None."""
    from ml.train.checkpoint import latest_checkpoint, load_checkpoint

    newest = latest_checkpoint(folder)
    if newest is not None:
        try:
            extra = load_checkpoint(newest, mmap=True).get("extra", {})
        except FormatError:       # unreadable: resuming will say so, naming the file
            extra = {}
        if extra.get("fingerprint") is not None:
            return extra["fingerprint"]
    return stored_fingerprint(folder)
