"""The `train` job: every dataset's model and model card (the assets tagged imageds/stage=train).

Training steps share one GPU: the multiprocess executor runs at most one step tagged
`imageds/gpu` at a time (and the `gpu` pool limits them across runs).
"""

from __future__ import annotations

import dagster as dg

TRAINING_STAGE = dg.AssetSelection.tag("imageds/stage", "train")


def train_job(executor_def: dg.ExecutorDefinition | None = None
              ) -> dg.UnresolvedAssetJobDefinition:
    """The train job; `executor_def` replaces the GPU-capped multiprocess executor (the
    Kubernetes code location runs it in process: each trainer is a pod of its own)."""
    return dg.define_asset_job(
        "train", selection=TRAINING_STAGE, executor_def=executor_def,
        description="Train every dataset's model on its packed data (through Dagster Pipes) "
                    "and write its model card. Run the prepare job first.",
        config=None if executor_def is not None else {"execution": {"config": {"multiprocess": {
            "tag_concurrency_limits": [{"key": "imageds/gpu", "limit": 1}]}}}},
    )
