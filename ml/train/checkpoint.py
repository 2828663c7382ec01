"""Checkpoints: state_dicts written atomically as `<dir>/epoch_<NNNN>.pt`; resume from the newest.

A checkpoint holds the model's state_dict (unwrapped from DDP), the optimizer's and scheduler's,
the epoch completed, the global step and any extra JSON-able state (class count, config). Only
complete files are ever visible (ml/atomic.py), so a crash mid-save resumes from the previous one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ml.atomic import atomic_path
from ml.errors import FormatError

_NAME = re.compile(r"^epoch_(\d{4,})\.pt$")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def checkpoint_path(folder: str | Path, epoch: int) -> Path:
    return Path(folder) / f"epoch_{epoch:04d}.pt"


def save_checkpoint(folder: str | Path, epoch: int, step: int, modules: dict[str, Any],
                    extra: dict[str, Any] | None = None, keep: int = 2) -> Path:
    """Save {name: module/optimizer/scheduler} state_dicts after `epoch`; keep the newest `keep`."""
    path = checkpoint_path(folder, epoch)
    state = {"epoch": int(epoch), "step": int(step), "extra": dict(extra or {}),
             "state": {name: unwrap(m).state_dict() for name, m in modules.items() if m is not None}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_epoch(folder: str | Path) -> int:
    """The epoch of the newest checkpoint in `folder` (0 when there is none)."""
    found = list_checkpoints(folder)
    return int(_NAME.match(found[-1].name).group(1)) if found else 0


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: str | Path, modules: dict[str, Any] | None = None,
                    map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint; restore the state_dicts of `modules` by name. Returns the whole dict.
    `mmap` maps the tensors instead of reading them (to look at `extra` cheaply)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, ValueError) as exc:
        raise FormatError(str(path), None, f"not a readable checkpoint ({exc}); delete it to "
                          "resume from the previous one or start over") from None
    for name, module in (modules or {}).items():
        if module is None:
            continue
        if name not in state["state"]:
            raise FormatError(str(path), None, f"the checkpoint has no {name!r} state "
                              f"(it has {sorted(state['state'])})")
        try:
            unwrap(module).load_state_dict(state["state"][name])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise FormatError(str(path), None, f"its {name!r} state does not fit this run's "
                              f"model ({first}); the options changed since it was saved: "
                              f"move {Path(path).parent} aside to start over") from None
    return state
