"""Typed options (ml/options.py): one model per section, checked at load, documented from the
model, and the Launchpad's run config derived from it."""

from pathlib import Path

import pytest
from pydantic import Field

from ml.dataset_spec import SECTIONS, documented_options, parse_datasets, repo_root
from ml.errors import ConfigError
from ml.options import Bool, Float, Int, Options, markdown_table, with_tables
from ml.packing import FormatsOptions
from ml.resize import ResizeOptions, ResizeSpec


def datasets(tmp_path: Path, **sections) -> dict:
    (tmp_path / "src").mkdir(exist_ok=True)
    return {"storage_root": str(tmp_path / "out"),
            "datasets": [{"name": "faces", "kind": "image_folder",
                          "source": {"root": str(tmp_path / "src")}, **sections}]}


def test_each_source_kind_declares_its_options_reader_and_images_option_once():
    from ml.sources import SOURCE_KINDS
    assert set(SOURCE_KINDS) == {"image_folder", "before_after", "coco", "hybrid", "h5_store",
                                 "recordio"}
    for name, kind in SOURCE_KINDS.items():
        assert kind.name == name and callable(kind.read)
        assert kind.options.model_fields[kind.images_option].is_required(), \
            f"{name}: where the images live must be given"


def parsed(tmp_path: Path, **sections):
    return parse_datasets(datasets(tmp_path, **sections), tmp_path / "datasets.yaml").datasets[0]


def test_the_readme_option_tables_are_the_models():
    readme = (repo_root() / "README.md").read_text()
    assert with_tables(readme, documented_options()) == readme, \
        "README option tables differ from the models: run `make options`"
    for name, model in documented_options().items():
        if model.model_fields:
            assert f"<!-- options: {name} -->" in readme, f"README has no table of {name}"


def test_a_table_lists_each_option_with_type_bounds_default_and_description():
    table = markdown_table(ResizeOptions).splitlines()
    width = next(line for line in table if line.startswith("| `width`"))
    assert width == "| `width` | integer >= 1, <= 65500 | `224` | Output width in pixels |"
    mode = next(line for line in table if line.startswith("| `mode`"))
    assert "stretch \\| letterbox \\| shorter_side_crop" in mode and "`letterbox`" in mode


@pytest.mark.parametrize("sections, message", [
    ({"resize": {"width": 0}}, r"^dataset 'faces': resize.width 0: input should be greater "
                               r"than or equal to 1 \(Output width in pixels\)$"),
    ({"resize": {"widht": 64}}, r"^dataset 'faces': resize.widht: unknown option; known: width, "),
    ({"resize": {"mode": "fit"}}, r"resize.mode 'fit': input should be 'stretch', 'letterbox' "
                                  r"or 'shorter_side_crop'"),
    ({"splits": {"leakage": "drop"}}, r"^dataset 'faces': splits.leakage 'drop'"),
    ({"splits": {"ratios": [0.5, 0.5]}}, r"^dataset 'faces': splits: 2 ratios for 3 names"),
    ({"verify": {"level": "pixels"}}, r"^dataset 'faces': verify.level 'pixels'"),
    ({"quality": {"blurry": 2}}, r"^dataset 'faces': quality.blurry 2: input should be less "
                                 r"than or equal to 1"),
    ({"formats": {"tfrecords": {"target_shard_mb": 0}}},
     r"^dataset 'faces': formats.tfrecords.target_shard_mb 0: input should be greater than 0"),
    ({"formats": {"recordoi": {}}}, r"^dataset 'faces': formats.recordoi: unknown option; "
                                    r"known: recordio, tfrecords, h5_store, validation_memfile$"),
    ({"train": {"processes": 2}}, r"^dataset 'faces': train.task: field required"),
    ({"resize": [224, 224]}, r"^dataset 'faces': resize must be a mapping of options, got list"),
    ({"source": {"roots": "x"}}, r"^dataset 'faces': source.root: field required \(The folder "
                                 r"holding .*; dataset 'faces': source.roots: unknown option; "
                                 r"known: root, labels_are, extensions$"),
    ({"source": {"root": "x", "labels_are": "person"}},
     r"^dataset 'faces': source.labels_are 'person': input should be 'class' or 'identity'"),
])
def test_a_bad_value_fails_when_the_file_is_read_naming_dataset_section_and_option(
        tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        parsed(tmp_path, **sections)


def test_sections_are_typed_with_their_defaults(tmp_path):
    spec = parsed(tmp_path, resize={"width": 64, "height": 48}, formats={"h5_store": None})
    assert {name: type(getattr(spec, name)) for name in SECTIONS if name != "train"} == \
        {name: model for name, model in SECTIONS.items() if name != "train"}
    assert (spec.resize.width, spec.resize.height, spec.resize.mode) == (64, 48, "letterbox")
    assert spec.formats.declared == ("h5_store",), "a format's key alone declares it"
    assert "h5_store" in spec.formats and "recordio" not in spec.formats
    assert spec.train is None, "no train: section, no training"


class Strictness(Options):
    whole: Int = 1
    flag: Bool = False
    number: Float = Field(1.0, ge=0)


@pytest.mark.parametrize("values", [{"whole": True}, {"whole": 2.5}, {"whole": "3"},
                                    {"flag": "yes"}, {"flag": 1}, {"number": True},
                                    {"number": float("nan")}, {"number": -1}])
def test_scalars_refuse_what_yaml_would_hide(values):
    with pytest.raises(ConfigError, match=f"^x.{next(iter(values))} "):
        Strictness.parse(values, "x")


def test_a_number_written_1e_3_reads_as_a_number():   # YAML 1.1 reads 1e-3 as text
    assert Strictness.parse({"number": "1e-3", "whole": 3}, "x") == Strictness(number=0.001, whole=3)


def test_options_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match=r"^resize.quality 101: input should be less than"):
        ResizeSpec(64, 64, quality=101)


def test_the_resize_fingerprint_of_the_same_look_is_unchanged():
    """A resize manifest written before the options became models stays valid: the same spec
    gives the same fingerprint, so nothing is resized again."""
    assert ResizeSpec(32, 32).fingerprint() == "f45f6434b4a4db1f"
    assert ResizeOptions(width=32, height=32, workers=3, pool_depth=2).output_spec() \
        .fingerprint() == "f45f6434b4a4db1f", "how the step runs is not part of the look"
    assert ResizeOptions(width=33, height=32, pool_depth=2, round_to_safe=True).output_spec() \
        == ResizeSpec(32, 32)


def test_updated_checks_the_whole_section_again():
    section = FormatsOptions.parse({"validation_memfile": {"pairs": 10}}, "f")
    assert section.validation_memfile.pairs == 10
    with pytest.raises(ConfigError, match=r"^dataset 'faces': resize.width -1"):
        ResizeOptions().updated({"width": -1}, "dataset 'faces': resize")
