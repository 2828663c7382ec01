"""`python -m ml.train TASK --config FILE --out DIR --input NAME=HANDLE [--set KEY=VALUE ...]`.

TASK is one of TASKS. Inputs are the packed artifacts the prepare job materialized, given as the
handle JSON files its IO manager writes (outputs/<dataset>/<asset>.handle.json) or, for folders
and split manifests, plain paths. Runs the same under torchrun (rank 0 reports). The Dagster Pipes
bridge calls `main(argv, sinks=[...])` with a sink that forwards events to the run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ml.atomic import atomic_write_text
from ml.errors import ConfigError, DatasetError
from ml.train.config import load_section, parse_overrides
from ml.train.checkpoint import latest_epoch
from ml.train.ddp import DistEnv
from ml.train.fingerprint import (PREVIOUS_SUFFIX, prepare_checkpoints, run_fingerprint,
                                  recorded_fingerprint, why_not_resume)
from ml.train.loop import CHECKPOINTS
from ml.train.provenance import run_provenance
from ml.train.report import Reporter, Sink
from ml.train.tasks import TASKS, inputs_help
from ml.train.tensorboard import TENSORBOARD_DIR



def parse_inputs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--input {pair!r}: expected NAME=PATH")
        out[name] = path
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n\n")[0],
                                epilog=inputs_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--config", help="YAML file with a section per task (config/train.yaml)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, curves, summary)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="an input artifact: a handle JSON or a path (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option of the task's config (repeatable)")
    p.add_argument("--events", help="also append every event as JSON lines to this file")
    p.add_argument("--fresh", action="store_true",
                   help="start from scratch even if checkpoints of the same inputs and config exist")
    return p


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, Any, Any]:
    args = parser().parse_args(argv)
    module = importlib.import_module(TASKS[args.task].module)
    where = f"{args.config or '(defaults)'}: {args.task}"
    values = {**load_section(args.config, args.task), **parse_overrides(args.set)}
    config = module.Config.parse(values, where)
    TASKS[args.task].check_inputs(parse_inputs(args.input), args.task)
    return args, module, config


def nothing_to_train(argv: list[str]) -> str | None:
    """Why the run `argv` would train nothing (its checkpoints, of the same inputs and config,
    already cover every epoch), or None when it has work to do. Changes nothing."""
    args, _, cfg = _parse(argv)
    folder = Path(args.out) / CHECKPOINTS
    newest = latest_epoch(folder)
    if args.fresh or newest == 0 or newest < cfg.epochs:
        return None
    if why_not_resume(recorded_fingerprint(folder), run_fingerprint(cfg, parse_inputs(args.input))):
        return None
    return (f"the checkpoint of epoch {newest} already covers the {cfg.epochs} epochs of this "
            "config and these inputs")


def main(argv: list[str] | None = None, sinks: list[Sink] | None = None) -> dict[str, Any]:
    args, module, cfg = _parse(argv)
    env = DistEnv.from_environment(getattr(cfg, "device", "auto"))
    out = Path(args.out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(sinks, enabled=env.is_main, jsonl_path=args.events,
                        tensorboard_dir=out / TENSORBOARD_DIR)
    inputs = parse_inputs(args.input)
    env.setup()
    try:
        folder = out / CHECKPOINTS
        if env.is_main:
            reason = prepare_checkpoints(folder, run_fingerprint(cfg, inputs), fresh=args.fresh)
            if reason is not None:
                reporter.log(f"starting fresh, not resuming: {reason} (the old checkpoints are "
                             f"in {folder.name}{PREVIOUS_SUFFIX}/)")
        env.barrier()
        start = latest_epoch(folder)
        summary = module.train(cfg, inputs, out, reporter, env)
        trained = latest_epoch(folder) - start
        if trained == 0 and (out / "summary.json").is_file():
            # resumed from the final checkpoint: nothing was trained, so the figures of the run
            # that trained it stand (a re-evaluation would overwrite them with partial values)
            summary = {**json.loads((out / "summary.json").read_text()), "trained_epochs": 0}
            reporter.log("nothing to train: the checkpoints already cover every epoch of this "
                         "config and these inputs; the model is unchanged")
        else:
            summary = {**summary, "trained_epochs": trained,
                       "provenance": run_provenance(cfg, inputs, env.device, env.world_size,
                                                    Path(__file__).resolve().parents[2])}
            if env.is_main:
                atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
        reporter.finish(**summary)       # the one summary event: what the launching asset records
        return summary
    finally:
        reporter.close()
        env.teardown()


def run() -> None:
    try:
        main()
    except DatasetError as exc:            # a user's mistake: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
