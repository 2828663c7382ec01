"""The Launchpad's run configs come from the options models: every option, optional, choices as
dropdowns; what a run sets goes over the dataset's section and is checked with it."""

import pytest

from assets.augmented_samples import AugmentedSamplesConfig
from assets.options import with_run_config
from assets.resize import ResizeRunConfig
from assets.splits import SplitRunConfig
from assets.training import TrainRunConfig
from assets.verification import VerifyRunConfig
from ml.errors import ConfigError
from ml.resize import ResizeOptions
from ml.sample_grid import SampleGridOptions
from ml.splits import SplitSpec
from ml.train.tasks import TrainSection
from ml.verify import VerifyConfig


@pytest.mark.parametrize("config, model, left_out", [
    (ResizeRunConfig, ResizeOptions, set()), (SplitRunConfig, SplitSpec, set()),
    (VerifyRunConfig, VerifyConfig, set()), (AugmentedSamplesConfig, SampleGridOptions, set()),
    (TrainRunConfig, TrainSection, {"task", "set", "gate_margin"}),
])
def test_every_option_of_the_model_is_in_its_run_config_unset(config, model, left_out):
    assert set(model.model_fields) - left_out <= set(config.model_fields)
    empty = config()
    assert all(getattr(empty, name) is None for name in config.model_fields)
    for name in set(model.model_fields) - left_out:
        assert config.model_fields[name].description == model.model_fields[name].description


def test_a_run_sets_options_over_the_section_and_is_checked_with_it():
    section = ResizeOptions(width=64, height=48, mode="stretch")
    merged = with_run_config(section, ResizeRunConfig(height=32, format="png"), "ds: resize")
    assert (merged.width, merged.height, merged.mode, merged.format) == (64, 32, "stretch", "png")
    assert with_run_config(section, None, "ds: resize") is section
    with pytest.raises(ConfigError, match=r"^ds: resize.quality 0: input should be greater"):
        with_run_config(section, ResizeRunConfig(quality=0), "ds: resize")
    names = with_run_config(SplitSpec(), SplitRunConfig(names=["a", "b"], ratios=[0.5, 0.5]), "s")
    assert names.names == ("a", "b")
