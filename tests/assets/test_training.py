"""Training assets: the trainer runs through Dagster Pipes (and torchrun), its summary becomes
metadata, and the next asset loads the checkpoint through the handle IO manager."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.training import TASK_INPUTS, summary_metadata, trainer_command
from assets.training_progress import observing_training
from ml.errors import ConfigError
from ml.formats.handles import CheckpointHandle, Handle
from tests.assets.helpers import definitions_for, materialization_metadata, materialize_all

FAST_CONTRASTIVE = {"epochs": 1, "batch_size": 8, "image_size": 32, "knn_k": 3}
UNGATED = -1.0    # one step on ten sequences learns nothing: these tests turn the gate off


def sequences_dataset(golden: Path, **train) -> dict:
    return {"name": "seq", "kind": "h5_store",
            "source": {"file": str(golden / "hdf5/sequences.h5")},
            "resize": {"mode": "shorter_side_crop", "width": 32, "height": 32, "workers": 1},
            "formats": {"h5_store": {}},
            "train": {"task": "contrastive", "set": FAST_CONTRASTIVE, "gate_margin": UNGATED,
                      **train}}


def run_logs(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    """Every message of the run: the assets' logs and what Pipes forwarded from the trainer."""
    return [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]


@pytest.mark.slow
def test_training_runs_through_pipes_and_the_checkpoint_reaches_the_next_asset(tmp_path, golden):
    defs = definitions_for(tmp_path, [sequences_dataset(golden)])
    result = materialize_all(defs)          # prepare, then the model, then its card
    meta = materialization_metadata(result, ["seq", "model"])
    assert meta["task"] == "contrastive" and meta["processes"] == 1
    gate = {e.check_name: e for e in result.get_asset_check_evaluations()}["model_beats_baseline"]
    assert gate.passed, gate.description
    for key in ("knn_accuracy", "knn_accuracy_random_init"):
        assert 0.0 <= meta[key] <= 1.0
    checkpoint = Path(meta["checkpoint"])
    assert checkpoint.is_file() and checkpoint.parent.name == "checkpoints"
    assert "](data:image/png;base64," in meta["curves"], "training curves are shown inline"
    stored = Handle.from_json((tmp_path / "outputs/seq/model.handle.json").read_text())
    assert isinstance(stored, CheckpointHandle) and stored.checkpoint == str(checkpoint)
    events = [json.loads(x) for x in Path(meta["events"]).read_text().splitlines()]
    assert {e["event"] for e in events} >= {"metric", "summary"}

    card_meta = materialization_metadata(result, ["seq", "model_card"])
    assert card_meta["parameters"] > 1000 and card_meta["epoch"] == 1
    card = Path(card_meta["path"]).read_text()
    assert "knn_accuracy" in card and "parameters: " in card and "values:" not in card
    assert "quality gate: passed" in card
    # provenance: the exact inputs, the runs that made them, the config, the code and the device
    provenance = meta["provenance"]
    h5 = json.loads((tmp_path / "outputs/seq/h5_store.handle.json").read_text())
    assert provenance["inputs"]["h5_store"]["sha256"] == h5["sha256"] and h5["sha256"] in card
    # the trainer was given the IO manager's own handle file, not a copy of it
    assert provenance["inputs"]["h5_store"]["file"] == str(tmp_path / "outputs/seq/h5_store.handle.json")
    assert not (tmp_path / "outputs/seq/train/contrastive/inputs").exists()
    assert set(provenance["dagster_runs"]) == {"seq/h5_store", "seq/splits",
                                              "seq/verification_report"}
    assert all(r["run_id"] == result.run_id for r in provenance["dagster_runs"].values())
    assert result.run_id in card and '"batch_size": 8' in card and "```json" in card
    assert provenance["config"]["knn_k"] == 3 and meta["device"].startswith("cpu (")
    assert len(meta["code_version"].split("+")[0]) == 40 or meta["code_version"].startswith(
        "unknown"), meta["code_version"]

    # the same data and config again: nothing to train, so no new model is recorded as fresh
    instance = dg.DagsterInstance.ephemeral()
    again = materialize_all(definitions_for(tmp_path, [sequences_dataset(golden)]),
                            instance=instance, selection=["seq/model", "seq/model_card"])
    assert again.success
    assert not again.asset_materializations_for_node("seq__model")
    assert not again.asset_materializations_for_node("seq__model_card")
    assert any("nothing to train" in m for m in run_logs(instance, again))
    assert Handle.from_json((tmp_path / "outputs/seq/model.handle.json").read_text()) == stored


@pytest.mark.slow
def test_two_processes_run_under_torchrun(tmp_path, golden):
    defs = definitions_for(tmp_path, [sequences_dataset(
        golden, processes=2, set={**FAST_CONTRASTIVE, "batch_size": 4})])
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_all(defs, instance=instance)
    assert result.success
    assert any("torch.distributed.run" in m and "--nproc_per_node=2" in m
               for m in run_logs(instance, result))
    meta = materialization_metadata(result, ["seq", "model"])
    assert meta["processes"] == 2 and Path(meta["checkpoint"]).is_file()


def test_failed_training_fails_the_step_with_the_trainers_message(tmp_path, golden):
    defs = definitions_for(tmp_path, [sequences_dataset(golden, set={**FAST_CONTRASTIVE, "backbone": "alexnet"})])
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_all(defs, instance=instance, selection="*seq/h5_store").success
    result = materialize_all(defs, instance=instance, selection="seq/model",
                             raise_on_error=False)
    assert not result.success
    assert any("alexnet" in m for m in run_logs(instance, result)), "the trainer's error reaches the run"


def test_train_section_is_checked_when_definitions_load(tmp_path, golden):
    with pytest.raises(ConfigError, match="dataset 'seq': train.task 'gan'"):
        definitions_for(tmp_path, [sequences_dataset(golden, task="gan")])
    bad = dict(sequences_dataset(golden), formats={})
    bad["train"] = {"task": "contrastive"}
    with pytest.raises(ConfigError, match="h5_store"):
        definitions_for(tmp_path, [bad])


def test_each_task_names_its_inputs_and_torchrun_is_used_for_several_processes():
    assert set(TASK_INPUTS) == {"face", "contrastive", "classify", "unet"}
    one = trainer_command("face", 1, ["--out", "x"])
    assert one[1:4] == ["-m", "resources.pipes_entry", "face"]
    two = trainer_command("face", 2, ["--out", "x"])
    assert "torch.distributed.run" in two and "--nproc_per_node=2" in two


def test_figures_are_rounded_for_people():
    meta = summary_metadata({"val_accuracy": 0.9299999999999999, "psnr": 23.456789,
                             "images": 1200, "loss": 0.000123456})
    assert meta["val_accuracy"].value == 0.93 and meta["psnr"].value == 23.46
    assert meta["loss"].value == 0.0001235 and meta["images"] == 1200


@pytest.mark.slow
def test_a_model_that_fails_its_quality_gate_does_not_reach_its_card(tmp_path, golden):
    # no model beats its untrained self by a whole 1.0 of kNN accuracy
    defs = definitions_for(tmp_path, [sequences_dataset(golden, gate_margin=1.0)])
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_all(defs, instance=instance, raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    gate = checks["model_beats_baseline"]
    assert not gate.passed and "knn_accuracy" in gate.description
    assert "did not learn" in gate.description
    assert result.asset_materializations_for_node("seq__model"), "the model itself is recorded"
    assert not result.asset_materializations_for_node("seq__model_card"), "blocked by the gate"
    assert any("does not beat the untrained network" in m for m in run_logs(instance, result))


@pytest.mark.slow
def test_training_figures_reach_the_ui_as_observations_while_the_trainer_runs(tmp_path, golden):
    defs = definitions_for(tmp_path, [sequences_dataset(golden, set={**FAST_CONTRASTIVE,
                                                                      "epochs": 3})])
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_all(defs, instance=instance, selection="*seq/model")
    records = instance.fetch_observations(dg.AssetKey(["seq", "model"]), limit=100).records
    observations = sorted(records, key=lambda r: r.timestamp)
    texts = [r.asset_observation.metadata["progress"].value for r in observations]
    assert any("epoch 1/3, step 1/" in t and "images/s, ETA" in t for t in texts), texts
    assert sum("evaluation" in t for t in texts) == 3, "every epoch's kNN accuracy"
    numbers = observations[-1].asset_observation.metadata
    assert 0.0 <= numbers["knn_accuracy"].value <= 1.0
    steps = [r.asset_observation.metadata for r in observations if "loss" in
             r.asset_observation.metadata]
    assert steps and "eta_s" not in steps[0], "the ETA is text, not a chart"
    assert Path(materialization_metadata(result, ["seq", "model"])["checkpoint"]).name == \
        "epoch_0003.pt"
    logs = run_logs(instance, result)
    assert any(m.startswith("epoch 1/3, step 1/") for m in logs), "readable lines, not JSON"
    assert not any(m.startswith("{") for m in logs)


def test_an_observation_is_in_the_event_log_while_the_trainer_still_runs(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"event": "metric", "step": 9, "loss": 9.0}) + "\n")  # old run
    seen_while_running = []

    @dg.asset(name="model")
    def fake_training(context):
        with observing_training(context, context.asset_key, events):
            with events.open("a") as f:       # the trainer writes its first step
                f.write(json.dumps({"event": "metric", "time": time.time(), "step": 1,
                                    "epoch": 1, "loss": 2.5, "lr": 0.1, "epochs": 4,
                                    "total_steps": 40, "images_per_s": 50.0, "eta_s": 30.0})
                        + "\n")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not seen_while_running:
                seen_while_running.extend(context.instance.fetch_observations(
                    context.asset_key, limit=10).records)
                time.sleep(0.1)
        return 1

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([fake_training], instance=instance).success
    assert len(seen_while_running) == 1, "logged while the step was still waiting"
    meta = seen_while_running[0].asset_observation.metadata
    assert meta["loss"].value == 2.5 and meta["images_per_s"].value == 50.0
    assert meta["progress"].value == ("epoch 1/4, step 1/40 (2.5%): loss 2.5, lr 0.1 | "
                                      "50 images/s, ETA 30s")
    assert len(instance.fetch_observations(dg.AssetKey("model"), limit=10).records) == 1, \
        "the old run's events are not replayed"


def test_launching_a_trainer_shows_no_pipes_preview_warning(recwarn):
    import warnings

    from resources.trainer_launchers import quiet_pipes_preview
    with quiet_pipes_preview():
        warnings.warn("Function `PipesMessageReader.expected_writer_count` is currently in "
                      "preview", dg.PreviewWarning)
        warnings.warn("something else in preview", dg.PreviewWarning)
    assert [str(w.message) for w in recwarn] == ["something else in preview"]


def test_a_run_config_device_reaches_the_trainer_as_its_plain_value(tmp_path, golden):
    from assets.training import TrainRunConfig, training_options
    from ml.dataset_spec import parse_datasets

    spec = parse_datasets({"storage_root": str(tmp_path), "datasets": [sequences_dataset(golden)]},
                          tmp_path / "datasets.yaml").datasets[0]
    opts = training_options(spec, TrainRunConfig(device="cpu", epochs=2))
    assert opts.set["device"] == "cpu" and opts.set["epochs"] == 2
