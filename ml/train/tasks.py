"""The training tasks: which module trains each, its options model, and which packed artifacts
it takes, by name and handle type.

One table read by the CLI (`python -m ml.train TASK --input NAME=FILE`, and its --help), the
trainers (`task_input` loads an input as its declaration says), the Dagster model asset (which
upstream asset feeds each input), the README's option tables and the quality gate
(ml/train/gate.py). Importing it imports no torch: a task's module (its `Config` model and
`train` function) is imported when the task runs or is documented.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import Field

from ml.errors import ConfigError
from ml.formats.handles import (H5StoreHandle, Handle, MemfileHandle, RecordIOHandle,
                                TFRecordShardsHandle)
from ml.options import Bool, Float, Int, Options, Text
from ml.train.inputs import input_handle, input_path

DEVICES = ("auto", "cpu", "cuda")    # a trainer's `device` option (auto: cuda when present)


@dataclass(frozen=True)
class TaskInput:
    asset: str                          # the prepare asset of the same dataset that provides it
    handle: type[Handle] | None         # the handle type its JSON holds; None: a plain file
    what: str                           # what the file is, for --help


@dataclass(frozen=True)
class Task:
    module: str                     # defines `Config` and `train(cfg, inputs, out, reporter, env)`
    inputs: dict[str, TaskInput]    # --input NAME -> where it comes from

    def options(self) -> type[Options]:
        """The task's options model (its module's `Config`; imports the module, and torch)."""
        return importlib.import_module(self.module).Config

    def check_inputs(self, inputs: dict[str, str], task: str) -> None:
        """Every declared input given, and no other (a misspelt --input name is an error)."""
        problems = ([f"missing input {n!r}" for n in self.inputs if n not in inputs] +
                    [f"unknown input {n!r}" for n in sorted(inputs) if n not in self.inputs])
        if problems:
            raise ConfigError(f"{task}: {'; '.join(problems)}; the task takes "
                              + ", ".join(f"--input {n}=PATH" for n in self.inputs))

    def load(self, inputs: dict[str, str], name: str) -> Handle | Path:
        """Input `name` as its declaration says: the handle of the declared type (from its
        *.handle.json), or the path of a plain file."""
        declared = self.inputs[name]
        return (input_handle(inputs, name, declared.handle) if declared.handle is not None
                else input_path(inputs, name))


TASKS: dict[str, Task] = {
    "face": Task("ml.train.face", {
        "recordio": TaskInput("recordio", RecordIOHandle,
                              "the train split packed as insightface RecordIO "
                              "(outputs/<dataset>/recordio.handle.json)"),
        "validation": TaskInput("validation_memfile", MemfileHandle, "the verification pairs "
                                "(outputs/<dataset>/validation_memfile.handle.json)")}),
    "contrastive": Task("ml.train.contrastive", {
        "h5_store": TaskInput("h5_store", H5StoreHandle, "frame sequences in an HDF5 store "
                              "(outputs/<dataset>/h5_store.handle.json)")}),
    "classify": Task("ml.train.classify", {
        "tfrecords": TaskInput("tfrecords", TFRecordShardsHandle, "the splits as TFRecord "
                               "shards (outputs/<dataset>/tfrecords.handle.json)")}),
    "unet": Task("ml.train.unet", {
        "splits": TaskInput("splits", None, "the before/after split table: a Parquet file "
                            "with group_id, role, file and split columns")}),
}


class TrainSection(Options):
    """The dataset's `train:` section: which task trains on the packed data, and how it runs."""

    task: Literal[tuple(TASKS)] = Field(description="`face` (recordio + validation_memfile), `contrastive` (h5_store), `classify` (tfrecords), `unet` (the splits); its inputs must be among the dataset's formats")
    config: Text = Field("config/train.yaml", description="A YAML with a section of options per task, relative to the repository; `config/gpu.yaml` holds real GPU settings")
    processes: Annotated[Int, Field(ge=1)] = Field(1, description="More than 1 launches `torchrun --nproc_per_node=N` (gloo on CPU, nccl on GPU)")
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides of the task's options, e.g. `{epochs: 4}`")
    fresh: Bool = Field(False, description="Start from scratch even when checkpoints of the same inputs and config exist")
    gate_margin: Optional[Float] = Field(None, description="How far the model's figure must beat its baseline to pass `model_beats_baseline` (null: the task's own margin, below)")

    SECTION: ClassVar[str] = "train"


def inputs_help() -> str:
    """The --input names each task needs, for --help."""
    lines = ["inputs each task needs (--input NAME=FILE):"]
    for name, task in TASKS.items():
        lines += [f"  {name}:"] + [f"    {key}: {inp.what}" for key, inp in task.inputs.items()]
    return "\n".join(lines)
