"""The external side of the Dagster Pipes bridge: `python -m resources.pipes_entry TASK ...`.

The training assets launch this module (through PipesSubprocessClient, or through torchrun when
more than one process is asked for) with the arguments of `python -m ml.train`. Rank 0 opens
the Pipes connection and forwards the trainer's events into the Dagster run: log lines and
readable metric lines as run logs, the final summary (checkpoint path, accuracies) as a custom
message the asset turns into metadata. Other ranks, and runs outside Dagster, train exactly
as `python -m ml.train` does. ml/ itself never imports Dagster or dagster_pipes.
"""

from __future__ import annotations

import os
import sys

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

from ml.errors import DatasetError
from ml.train.cli import main as train_main
from ml.train.report import readable_sink


def pipes_sink(pipes: PipesContext):
    """Readable lines into the run's log (step lines at most every few seconds, as on a
    terminal); the summary as the custom message the model asset records. The live metrics
    reach the UI as asset observations from the events file (assets/training_progress.py)."""
    show = readable_sink(pipes.log.info)

    def forward(event: dict) -> None:
        if event.get("event") == "summary":
            pipes.report_custom_message({"summary": {k: v for k, v in event.items()
                                                     if k not in ("event", "time")}})
        else:
            show(event)
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
