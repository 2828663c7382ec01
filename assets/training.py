"""Training assets: `<dataset>/model` runs a trainer (ml/train) through Dagster Pipes on the
artifacts the prepare job packed, and `<dataset>/model_card` loads the checkpoint it produced.

A dataset opts in with a `train:` section in config/datasets.yaml:

```yaml
train:
  task: face                 # face | contrastive | classify | unet (ml/train/tasks.py TASKS)
  config: config/train.yaml  # YAML with a section per task (config/gpu.yaml for a real GPU run)
  processes: 1               # > 1 launches torchrun --nproc_per_node=N (gloo on CPU, nccl on GPU)
  set: {epochs: 4}           # overrides of the task's options
```

The inputs arrive through the IO managers (typed handles, the split manifest as a DataFrame),
are written as small files into the run folder and passed to the trainer, which runs in a
subprocess (`python -m resources.pipes_entry`, or torchrun). Its log lines and metrics stream
into the run; its summary (accuracies, checkpoint path, curves) becomes the asset's metadata and
a CheckpointHandle that the next asset loads through the handle IO manager. Training steps carry
the `imageds/gpu` tag and the `gpu` pool, so at most one runs at a time, and a
`dagster-k8s/config` tag asking for one GPU per trainer process. The `trainer_launcher` resource
(resources/trainer_launchers.py) decides where the trainer runs: a local subprocess, or on
Kubernetes a pod of its own (jobs/k8s.py).
"""

import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from assets.metadata import for_people, image_markdown
from assets.options import choices, overrides, run_config_class
from assets.training_progress import observing_training
from ml.atomic import atomic_write_text
from ml.checksums import files_sha256
from ml.dataset_spec import DatasetSpec, repo_root
from ml.errors import ConfigError
from ml.formats.handles import CheckpointHandle, StoredHandle
from ml.stored_table import StoredTable
from ml.train.card import model_card as model_card_markdown
from ml.train.config import TaskOptions
from ml.train.gate import GATES
from ml.train.tasks import DEVICES, TASKS, TrainSection
from ml.train.tensorboard import TENSORBOARD_DIR
from resources.io_managers import AS_STORED
from resources.trainer_launchers import K8S_CONFIG_TAG, TrainerLauncher, k8s_gpu_config

# task -> {trainer input name: upstream asset of the same dataset}
TASK_INPUTS: dict[str, dict[str, str]] = {
    task: {name: inp.asset for name, inp in spec.inputs.items()} for task, spec in TASKS.items()}
GATE_CHECK = "model_beats_baseline"
PROVENANCE_ASSETS = ["verification_report", "splits"]   # named in every card, beside the inputs
EVENTS_FILE = "events.jsonl"     # every event of every run of the trainer, as JSON lines
GPU_TAGS = {"imageds/gpu": "1"}
GPU_POOL = "gpu"


def training_op_tags(processes: int) -> dict[str, Any]:
    """The model step's tags: the GPU concurrency tag, and one GPU per trainer process."""
    return {**GPU_TAGS, K8S_CONFIG_TAG: k8s_gpu_config(processes)}


# The task options a run may set (they go into the section's `set`): type and description.
TASK_OPTIONS_IN_RUN_CONFIG = {
    "epochs": (int, "Epochs to train (overrides the task's YAML section)"),
    "device": (choices("TrainDevice", DEVICES), TaskOptions.model_fields["device"].description)}
TrainRunConfig = run_config_class(
    TrainSection, "TrainRunConfig",
    "Overrides of the dataset's `train:` section for one run (empty = use datasets.yaml).",
    leave_out=("task", "set", "gate_margin"), extra=TASK_OPTIONS_IN_RUN_CONFIG)


def training_options(spec: DatasetSpec, run_config: dg.Config | None = None) -> TrainSection:
    """The dataset's `train:` section with what the run sets: a task option (epochs, device)
    goes into `set`, beside the section's own."""
    where = spec.where("train")
    if spec.train is None:
        raise ConfigError(f"{where}: the dataset has no train: section")
    changes = overrides(run_config)
    task_options = {k: changes.pop(k) for k in TASK_OPTIONS_IN_RUN_CONFIG if k in changes}
    if task_options:
        changes["set"] = {**spec.train.set, **task_options}
    return spec.train.updated(changes, where)


def check_trainable(spec: DatasetSpec, train: TrainSection) -> None:
    """The task's inputs are packed by the dataset (a ConfigError naming what to add)."""
    missing = [a for a in TASK_INPUTS[train.task].values()
               if a != "splits" and a not in spec.formats]
    if missing:
        raise ConfigError(f"dataset {spec.name!r}: task {train.task!r} trains on "
                          f"{missing}, which the dataset does not pack; add them under formats:")


def trainer_command(task: str, processes: int, args: list[str]) -> list[str]:
    """The subprocess: the Pipes entry point, under torchrun when several processes are asked."""
    if processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}", "-m", "resources.pipes_entry", task, *args]
    return [sys.executable, "-m", "resources.pipes_entry", task, *args]


def input_args(inputs: dict[str, Any]) -> list[str]:
    """The trainer's --input arguments: each input's own stored file (the IO manager's handle
    JSON or Parquet table, handed over as stored: AS_STORED), passed on, never copied."""
    args = []
    for name, value in sorted(inputs.items()):
        if isinstance(value, StoredHandle):
            path = value.path
        elif isinstance(value, StoredTable) and len(value.paths) == 1:
            path = value.paths[0]
        else:
            raise TypeError(f"training input {name!r}: cannot pass a {type(value).__name__} "
                            "(expected a stored handle or one stored table)")
        args += ["--input", f"{name}={path}"]
    return args


def summary_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """The trainer's summary as typed metadata: numbers plot over runs, paths link, PNGs show."""
    meta: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, bool) or value is None:
            meta[key] = str(value)
        elif isinstance(value, (int, float)):
            meta[key] = dg.MetadataValue.float(for_people(value)) if isinstance(value, float) \
                and math.isfinite(value) else value
        elif isinstance(value, str) and (key == "checkpoint" or key.endswith(("_png", "_path"))):
            meta[key] = dg.MetadataValue.path(value)
        elif isinstance(value, (dict, list)):
            meta[key] = dg.MetadataValue.json(value)
        else:
            meta[key] = str(value)
    pngs = {k: v for k, v in summary.items() if k.endswith("_png") and isinstance(v, str)
            and Path(v).is_file()}
    for key, names in (("curves", [k for k in pngs if k == "curves_png"]),
                       ("evaluation", [k for k in pngs if k != "curves_png"])):
        if names:
            meta[key] = dg.MetadataValue.md("\n\n".join(
                image_markdown(Path(pngs[k]).read_bytes(), Path(pngs[k]).stem) for k in names))
    return meta


def upstream_runs(instance: dg.DagsterInstance, keys: list[dg.AssetKey]) -> dict[str, Any]:
    """{asset: {run_id, materialized}} of each key's latest materialization (the data this
    model was trained on came from those runs)."""
    runs = {}
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        if event is not None:
            runs[key.to_user_string()] = {
                "run_id": event.run_id,
                "materialized": datetime.fromtimestamp(event.timestamp, timezone.utc)
                .isoformat(timespec="seconds")}
    return runs


def build_training_assets(spec: DatasetSpec) -> list[dg.AssetsDefinition]:
    if spec.train is None:
        return []
    opts = spec.train
    check_trainable(spec, opts)
    task = opts.task
    out_dir = spec.output_dir / "train" / task
    gate = GATES[task]
    gate_margin = gate.margin if opts.gate_margin is None else opts.gate_margin
    ins = {name: dg.AssetIn(key=dg.AssetKey([spec.name, upstream]), metadata=AS_STORED)
           for name, upstream in TASK_INPUTS[task].items()}

    @dg.asset(
        name="model", key_prefix=[spec.name], group_name=spec.name, ins=ins,
        io_manager_key="handle_io_manager", kinds={"pytorch"}, output_required=False,
        op_tags=training_op_tags(opts.processes), pool=GPU_POOL,
        tags={"imageds/stage": "train"},
        description=f"Trains the {task} model on {spec.name}'s packed data (ml.train.{task}, "
                    "launched through Dagster Pipes); resumes from the newest checkpoint when it "
                    "was trained on the same inputs and config, else starts fresh. A run that "
                    "trains nothing publishes no new model.",
    )
    def model(context: dg.AssetExecutionContext, config: TrainRunConfig,
              trainer_launcher: TrainerLauncher, **inputs):
        try:
            run_opts = training_options(spec, config)
        except ConfigError as exc:
            raise dg.Failure(description=str(exc)) from None
        root = repo_root()
        cfg = Path(run_opts.config)
        cfg = cfg if cfg.is_absolute() else root / cfg
        args = ["--config", str(cfg), "--out", str(out_dir),
                *input_args(inputs),
                *[a for k, v in run_opts.set.items() for a in ("--set", f"{k}={v}")],
                *(["--fresh"] if run_opts.fresh else []),
                "--events", str(out_dir / EVENTS_FILE)]
        from ml.train.cli import nothing_to_train    # torch is imported at run time only
        idle = nothing_to_train([task, *args])
        if idle is not None:
            context.log.info(f"{spec.name}: nothing to train ({idle}); no new model is "
                             "published. Set fresh: true to train again from scratch")
            return
        command = trainer_command(task, run_opts.processes, args)
        context.log.info("launching: " + " ".join(command))
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        with observing_training(context, context.asset_key, out_dir / EVENTS_FILE):
            invocation = trainer_launcher.launch(context=context, command=command, env=env,
                                                 cwd=str(root))
        summaries = [m["summary"] for m in invocation.get_custom_messages()
                     if isinstance(m, dict) and "summary" in m]
        if not summaries:
            raise dg.Failure(description=f"{spec.name}: the {task} trainer exited without a "
                                         f"summary; see the run's logs and {out_dir}")
        summary = summaries[-1]
        if "provenance" in summary:
            summary["provenance"]["dagster_runs"] = upstream_runs(
                context.instance, [dg.AssetKey([spec.name, a]) for a in sorted(
                    set(PROVENANCE_ASSETS) | set(TASK_INPUTS[task].values()))])
        handle = CheckpointHandle(task=task, checkpoint=str(summary["checkpoint"]),
                                  out_dir=str(out_dir), summary=summary)
        meta = summary_metadata(summary)
        meta.update({"task": task, "processes": run_opts.processes,
                     "config": dg.MetadataValue.path(str(cfg)),
                     "events": dg.MetadataValue.path(str(out_dir / EVENTS_FILE)),
                     "tensorboard": dg.MetadataValue.path(str(out_dir / TENSORBOARD_DIR))})
        provenance = summary.get("provenance", {})
        meta.update({k: str(provenance[k]) for k in ("code_version", "device") if k in provenance})
        yield dg.Output(handle, metadata=meta)

    @dg.asset_check(
        asset=model, name=GATE_CHECK, blocking=True,
        description=f"The model's {gate.figure} beats {gate.what} ({gate.baseline}) by at least "
                    f"{gate_margin:g}; a model that did not learn does not reach its card",
    )
    def model_beats_baseline(context: dg.AssetCheckExecutionContext,
                             model: CheckpointHandle) -> dg.AssetCheckResult:
        verdict = gate.judge(model.summary, gate_margin)
        (context.log.info if verdict.passed else context.log.error)(
            f"{spec.name}: {verdict.sentence}")
        return dg.AssetCheckResult(
            passed=verdict.passed, severity=dg.AssetCheckSeverity.ERROR,
            description=verdict.sentence,
            metadata={"figure": for_people(verdict.figure),
                      "baseline": for_people(verdict.baseline),
                      "required_margin": for_people(verdict.margin),
                      "margin": for_people(verdict.figure - verdict.baseline)})

    @dg.asset(
        name="model_card", key_prefix=[spec.name], group_name=spec.name,
        ins={"model": dg.AssetIn(key=dg.AssetKey([spec.name, "model"]))},
        kinds={"markdown"}, tags={"imageds/stage": "train"},
        description=f"Loads {spec.name}'s trained checkpoint through the IO manager, checks its "
                    "weights and writes a model card (figures, weights checksum, provenance).",
    )
    def model_card(context: dg.AssetExecutionContext, model: CheckpointHandle) -> dg.MaterializeResult:
        from ml.train.checkpoint import load_checkpoint   # torch: only where a model is read
        state = load_checkpoint(model.checkpoint)
        weights = {k: v for k, v in state["state"].items() if not k.startswith(("optim", "sched"))}
        tensors = [t for part in weights.values() for t in _tensors(part)]
        params = sum(t.numel() for t in tensors)
        bad = sum(int((~t.isfinite()).sum()) for t in tensors if t.is_floating_point())
        if bad:
            raise dg.Failure(description=f"{model.checkpoint}: {bad} weights are NaN or "
                                         "infinite; the training diverged, lower the learning rate")
        digest = files_sha256([model.checkpoint])
        card = model_card_markdown(f"{spec.name} {model.task} model", model.checkpoint, digest,
                                   state["epoch"], state["step"], params, model.summary,
                                   gate.judge(model.summary, gate_margin))
        path = Path(model.out_dir) / "MODEL_CARD.md"
        atomic_write_text(path, card)
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(path)), "card": dg.MetadataValue.md(card),
            "parameters": params, "epoch": state["epoch"], "checkpoint_sha256": digest})

    return [model, model_beats_baseline, model_card]


def _tensors(part: Any):
    """Every tensor in a (possibly nested) state_dict."""
    import torch
    if isinstance(part, torch.Tensor):
        yield part
    elif isinstance(part, dict):
        for v in part.values():
            yield from _tensors(v)
    elif isinstance(part, (list, tuple)):
        for v in part:
            yield from _tensors(v)
