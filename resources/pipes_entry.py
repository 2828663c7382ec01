"""The external side of the Dagster Pipes bridge: `python -m resources.pipes_entry TASK ...`.

The training assets launch this module (through PipesSubprocessClient, or through torchrun when
more than one process is asked for) with the arguments of `python -m ml.train`. Rank 0 opens
the Pipes connection and forwards the trainer's events into the Dagster run: log lines and
metrics as run logs, metrics and the final summary (checkpoint path, accuracies) as custom
messages the asset turns into metadata. Other ranks, and runs outside Dagster, train exactly
as `python -m ml.train` does. ml/ itself never imports Dagster or dagster_pipes.
"""

from __future__ import annotations

import os
import sys

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

from ml.errors import DatasetError
from ml.train.cli import main as train_main


def pipes_sink(pipes: PipesContext):
    def forward(event: dict) -> None:
        kind = event.get("event")
        if kind == "log":
            pipes.log.info(event["message"])
        elif kind == "metric":
            values = {k: v for k, v in event.items() if k not in ("event", "time", "step", "epoch")}
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            pipes.log.info(f"epoch {event.get('epoch')} step {event['step']}: {shown}")
            pipes.report_custom_message({"metric": event})
        elif kind == "artifact":
            pipes.log.info(f"{event['name']}: {event['path']}")
        elif kind == "summary":
            pipes.report_custom_message({"summary": {k: v for k, v in event.items()
                                                     if k not in ("event", "time")}})
    return forward


def run(argv: list[str]) -> int:
    is_rank0 = int(os.environ.get("RANK", "0")) == 0
    if not (is_rank0 and PipesEnvVarParamsLoader().is_dagster_pipes_process()):
        train_main(argv)
        return 0
    with open_dagster_pipes() as pipes:
        try:
            train_main(argv, sinks=[pipes_sink(pipes)])
        except DatasetError as exc:   # a user's mistake: one clear line in the run's log
            pipes.log.error(f"training failed: {exc}")
            raise
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
