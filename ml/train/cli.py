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
from ml.train.config import build_config, load_section, parse_overrides
from ml.train.distributed import DistEnv
from ml.train.report import Reporter, Sink

# task name -> module with `Config` (a dataclass) and `train(cfg, inputs, out, reporter, env) -> dict`
TASKS = {
    "face": "ml.train.face",
    "contrastive": "ml.train.contrastive",
    "classify": "ml.train.classify",
    "unet": "ml.train.unet",
}


def parse_inputs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--input {pair!r}: expected NAME=PATH")
        out[name] = path
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--config", help="YAML file with a section per task (config/train.yaml)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, curves, summary)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="an input artifact: a handle JSON or a path (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option of the task's config (repeatable)")
    p.add_argument("--events", help="also append every event as JSON lines to this file")
    return p


def main(argv: list[str] | None = None, sinks: list[Sink] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    module = importlib.import_module(TASKS[args.task])
    where = f"{args.config or '(defaults)'}: {args.task}"
    values = {**load_section(args.config, args.task), **parse_overrides(args.set)}
    cfg = build_config(module.Config, values, where)
    env = DistEnv.from_environment(getattr(cfg, "device", "auto"))
    out = Path(args.out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(sinks, enabled=env.is_main, jsonl_path=args.events)
    env.setup()
    try:
        summary = module.train(cfg, parse_inputs(args.input), out, reporter, env)
        if env.is_main:
            atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
        return summary
    finally:
        env.teardown()


def run() -> None:
    try:
        main()
    except DatasetError as exc:            # a user's mistake: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
