"""Where a model comes from: the exact inputs (content checksums), the full training config, the
code version and the device. The trainer adds it to its summary (`provenance`), so it reaches
summary.json, the model asset's metadata and MODEL_CARD.md; the model asset adds the Dagster
runs that materialized each input.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
from pathlib import Path
from typing import Any

from ml.formats.handles import Handle
from ml.train.fingerprint import input_fingerprint

GIT_TIMEOUT_S = 10


def code_version(root: str | Path) -> str:
    """The git commit of the code (`<sha>`, `<sha>+changes` when the worktree differs from it),
    or why it is unknown."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{sha}+changes" if changed else sha


def input_provenance(path: str | Path) -> dict[str, Any]:
    """One --input: its file, its content fingerprint, and a handle's own checksum and counts."""
    p = Path(path)
    entry: dict[str, Any] = {"file": str(p), "fingerprint": input_fingerprint(p)}
    if p.name.endswith(".handle.json"):
        handle = Handle.from_json(p.read_text())
        entry["kind"] = handle.kind
        entry.update({f.name: getattr(handle, f.name) for f in dataclasses.fields(handle)
                      if f.name.endswith("sha256") or f.name.startswith("num_")})
    return entry


def device_description(device: Any) -> str:
    """'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (x86_64, 2 threads)'."""
    import torch
    if getattr(device, "type", str(device)) == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.machine()}, {torch.get_num_threads()} threads)"


def run_provenance(config: Any, inputs: dict[str, str], device: Any, world_size: int,
                   root: str | Path) -> dict[str, Any]:
    import torch
    options = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {
        "inputs": {name: input_provenance(path) for name, path in sorted(inputs.items())},
        "config": options,
        "code_version": code_version(root),
        "device": device_description(device),
        "processes": world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
