"""The prepare job's multiprocess cap comes from IMAGEDS_MAX_CONCURRENT (a run's config
overrides it)."""

from __future__ import annotations

import pytest

from tests.assets.helpers import definitions_for, make_folder_dataset


def test_prepare_caps_parallel_steps_from_the_environment(tmp_path, monkeypatch):
    folder = make_folder_dataset(tmp_path / "src", classes=1, per_class=2)
    entry = [{"name": "capped", "kind": "image_folder", "source": {"root": str(folder)}}]
    monkeypatch.setenv("IMAGEDS_MAX_CONCURRENT", "3")
    defs = definitions_for(tmp_path, entry)
    assert defs.resolve_job_def("prepare").run_config == {
        "execution": {"config": {"multiprocess": {"max_concurrent": 3}}}}
    monkeypatch.setenv("IMAGEDS_MAX_CONCURRENT", "lots")
    with pytest.raises(Exception, match="IMAGEDS_MAX_CONCURRENT='lots'"):
        definitions_for(tmp_path, entry)
