"""The one containment helper: values from data become one safe path component, values from
config are refused unless plain, joined paths stay inside their folder, links never replace."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.errors import ConfigError, PathEscapeError
from ml.safe_paths import (check_name, check_output_file, contained, link_or_copy_new,
                           relative_name, relative_names, safe_component, safe_components)


@pytest.mark.parametrize("value", [
    "../../../images/c", "..", ".", "/etc/passwd", "a/b", "a\\b", "C:evil", "c:\\windows",
    "nul\x00byte", ".hidden", "trailing.", "trailing ", "%2F", "\udcff\udcfe", "",
    "x" * 400, "é" * 150,
])
def test_a_data_value_becomes_one_component_that_stays_in_its_folder(tmp_path, value):
    comp = safe_component(value)
    assert comp and "/" not in comp and "\\" not in comp and "\x00" not in comp and ":" not in comp
    assert not comp.startswith(".") and comp[-1] not in ". "
    assert len(comp.encode("utf-8")) <= 255
    path = tmp_path / comp
    assert path.parent == tmp_path and os.path.normpath(path) == str(path)
    path.mkdir()                                     # a real filesystem accepts it


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=12, unique=True))
def test_distinct_values_stay_distinct_even_on_a_case_insensitive_disk(values):
    comps = safe_components(values)
    assert len({c.casefold() for c in comps.values()}) == len(values)
    for c in comps.values():
        assert "/" not in c and not c.startswith(".") and "\x00" not in c


def test_plain_names_are_kept_as_they_are():
    assert safe_component("Acer_rubrum") == "Acer_rubrum"
    assert safe_components(["cat", "dog"]) == {"cat": "cat", "dog": "dog"}
    assert set(safe_components(["Cat", "cat"]).values()) != {"Cat", "cat"}     # one folder on macOS


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "..", "x y", "tr\\ain", 3])
def test_a_config_name_that_is_not_plain_is_refused(name):
    with pytest.raises(ConfigError, match="splits.names"):
        check_name(name, "splits.names")


def test_contained_refuses_climbing_out_and_symlinks_leading_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert contained(out, "a", "b.txt") == out / "a" / "b.txt"
    for parts in (["..", "x"], ["a", "..", "..", "x"], ["/etc/passwd"], ["."]):
        with pytest.raises(PathEscapeError, match="outside the output folder"):
            contained(out, *parts)
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PathEscapeError, match="symlink"):
        contained(out, "link", "x.jpg")


def test_a_link_or_copy_never_replaces_an_existing_file(tmp_path, monkeypatch):
    src, dst = tmp_path / "src.jpg", tmp_path / "dst.jpg"
    src.write_bytes(b"source")
    dst.write_bytes(b"precious")
    with pytest.raises(PathEscapeError, match="never replaces"):
        link_or_copy_new(src, dst)

    def no_links(a, b):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("ml.safe_paths.os.link", no_links)
    with pytest.raises(PathEscapeError, match="never replaces"):
        link_or_copy_new(src, dst)                   # the copy fallback (shutil.copy2 replaced it)
    assert dst.read_bytes() == b"precious"
    assert link_or_copy_new(src, tmp_path / "new.jpg") == "copy"
    assert (tmp_path / "new.jpg").read_bytes() == b"source"


def test_a_configured_output_file_must_be_ours_and_inside_the_output_folder(tmp_path):
    out, images = tmp_path / "out", tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"jpeg")
    with pytest.raises(ConfigError, match="outside the dataset's output folder"):
        check_output_file(images / "a.jpg", output_dir=out, protected=[images], what="report")
    nested = out / "imgs"
    nested.mkdir(parents=True)
    (nested / "x.jpg").write_bytes(b"jpeg")
    with pytest.raises(ConfigError, match="inside the images folder"):
        check_output_file(nested / "r.json", output_dir=out, protected=[nested], what="report")
    with pytest.raises(ConfigError, match="not written by this project"):
        check_output_file(nested / "x.jpg", output_dir=out, what="report", ours=lambda p: False)
    assert check_output_file(out / "r.json", output_dir=out, what="report") == out / "r.json"


@pytest.mark.parametrize("name", ["a", "a/b", "a\\b", "", "/a", "a//b", "a/", ".", "..", "a/../b",
                                  "a/./b", "...", "a/...", "c:x", "a/c:x", "a\x00b", ".hidden",
                                  "a/.b", "..b", "b..", "\\\\server\\share", "a\\..\\b"])
def test_relative_names_of_a_column_refuse_exactly_what_relative_name_refuses(name):
    try:
        expected = relative_name(name, "output name")
    except PathEscapeError:
        with pytest.raises(PathEscapeError):
            relative_names([name, "fine"], "output name")
        return
    assert relative_names(["fine", name], "output name").to_pylist() == ["fine", expected]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab./\\:\x00 \n", max_size=12))
def test_relative_names_agree_with_relative_name_on_any_text(name):
    test_relative_names_of_a_column_refuse_exactly_what_relative_name_refuses(name)
