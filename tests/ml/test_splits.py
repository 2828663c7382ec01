"""Splits: ratios, stability under added samples, group integrity, stratification, link tree."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from ml.errors import ConfigError
from ml.stored_table import StoredTable, TableEdit
from ml.splits import (SplitSpec, assign_splits, build_link_tree, class_counts, coverage_warnings,
                       manifest_targets, split_counts, write_class_counts)


def frame_of(n_labels=10, per_label=100, group_kind="none", group_size=1):
    rows = []
    for l in range(n_labels):
        for i in range(per_label):
            sid = f"s{l}_{i}"
            rows.append({"sample_id": sid, "label": f"c{l}",
                         "group_id": f"g{l}_{i // group_size}" if group_kind != "none" else sid,
                         "group_kind": group_kind})
    return pd.DataFrame(rows)


def test_default_ratios_are_seed_004s_and_per_class():
    f = frame_of()
    f["split"] = assign_splits(f, SplitSpec())
    share = f["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.80, abs=0.03)
    assert share["val"] == pytest.approx(0.12, abs=0.03)
    assert share["test"] == pytest.approx(0.08, abs=0.03)
    per_class = f.groupby("label")["split"].apply(lambda s: (s == "train").mean())
    assert per_class.between(0.65, 0.95).all()       # every class is split, not whole classes


def test_adding_samples_never_moves_old_ones():
    f = frame_of(per_label=50)
    before = assign_splits(f, SplitSpec(seed=7))
    bigger = pd.concat([f, frame_of(per_label=80).iloc[::3].assign(
        sample_id=lambda d: "new_" + d["sample_id"])], ignore_index=True)
    after = assign_splits(bigger, SplitSpec(seed=7))
    assert (after.iloc[: len(f)].to_numpy() == before.to_numpy()).all()


def test_seed_changes_assignment_deterministically():
    f = frame_of(per_label=50)
    a, b = assign_splits(f, SplitSpec(seed=1)), assign_splits(f, SplitSpec(seed=2))
    assert (a == assign_splits(f, SplitSpec(seed=1))).all() and (a != b).any()


@pytest.mark.parametrize("kind", ["pair", "sequence"])
def test_pairs_and_sequences_never_straddle(kind):
    f = frame_of(group_kind=kind, group_size=5)
    f["split"] = assign_splits(f, SplitSpec())
    assert f.groupby("group_id")["split"].nunique().max() == 1


def test_identities_grouped_only_when_asked():
    f = frame_of(n_labels=60, per_label=8, group_kind="identity", group_size=8)
    loose = assign_splits(f, SplitSpec())
    assert f.assign(s=loose).groupby("group_id")["s"].nunique().max() > 1
    tight = assign_splits(f, SplitSpec(group_identities=True))
    grouped = f.assign(s=tight).groupby("group_id")["s"].nunique()
    assert grouped.max() == 1
    assert set(tight) == {"train", "val", "test"}


@pytest.mark.parametrize("opts", [{"ratios": [0.5, 0.6, 0.1]}, {"ratios": [0.5, 0.5]},
                                  {"ratios": [-0.1, 1.0, 0.1]}, {"shuffle": True},
                                  {"names": ["train", "class_counts"], "ratios": [0.5, 0.5]}])
def test_bad_split_options(opts):
    with pytest.raises(ConfigError, match=r"^dataset 'ds': splits"):
        SplitSpec.parse(opts, "dataset 'ds': splits")


def test_manifests_and_link_tree(tmp_path):
    files = []
    for i in range(20):
        p = tmp_path / "resized" / f"{i}.jpg"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x" * (i + 1))
        files.append(str(p))
    f = frame_of(n_labels=2, per_label=10).assign(file=files)
    f["split"] = assign_splits(f, SplitSpec())
    f.drop(columns="split").to_parquet(tmp_path / "resized.parquet", index=False)
    targets = manifest_targets(f["split"], tmp_path / "splits", SplitSpec())
    edit = TableEdit(StoredTable.at(tmp_path / "resized.parquet"), f[["split"]], also=targets)
    written = edit.save(tmp_path / "splits.parquet")     # the table and its manifests, one pass
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "splits.parquet"), f)
    for name, path in zip(SplitSpec().names, targets):   # each split's rows, every column
        assert path == tmp_path / "splits" / f"{name}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(path),
                                      f.loc[f["split"] == name].reset_index(drop=True))
        assert written[path] == int((f["split"] == name).sum())
    counts = build_link_tree(f, tmp_path / "splits" / "tree")
    assert counts["link"] + counts["copy"] == 20
    linked = list((tmp_path / "splits" / "tree").rglob("*.jpg"))
    assert len(linked) == 20
    one = f.iloc[0]
    target = tmp_path / "splits" / "tree" / one["split"] / one["label"] / "0.jpg"
    assert os.path.samefile(target, one["file"])            # a hard link, not a copy
    per_class = class_counts(f)
    assert split_counts(per_class)["train"]["c0"] == \
        int(((f["split"] == "train") & (f["label"] == "c0")).sum())
    table = pd.read_parquet(write_class_counts(per_class, tmp_path / "splits"))
    assert table["samples"].sum() == 20 and list(table.columns) == ["split", "label", "samples"]
    assert table.set_index(["split", "label"])["samples"].to_dict() == \
        f.groupby(["split", "label"]).size().to_dict()


def test_the_column_at_once_assigns_exactly_what_the_per_unit_rule_does():
    """Assignments are a contract (adding samples never moves old ones): the vectorised path
    must give every unit the split of sha256(seed, unit) as documented, over 200k rows."""
    import hashlib

    n = 200_000
    ids = [f"{i:016x}" for i in range(n)]
    frame = pd.DataFrame({"sample_id": ids, "group_id": [f"g{i // 3}" for i in range(n)],
                          "group_kind": ["pair" if i % 2 else "none" for i in range(n)]})
    spec = SplitSpec(seed=11)
    got = assign_splits(frame, spec)
    edges = np.cumsum(spec.ratios)[:-1]
    for i in range(0, n, 997):
        unit = frame["group_id"][i] if i % 2 else ids[i]
        h = int.from_bytes(hashlib.sha256(f"11\x00{unit}".encode()).digest()[:8], "big") / 2.0 ** 64
        assert got[i] == spec.names[int(np.searchsorted(edges, h, side="right"))]



def test_coverage_warnings_name_small_splits_and_classes_missing_from_a_split():
    counts = {"train": {"ant": 4, "bee": 30, "cat": 20}, "val": {"bee": 3, "cat": 1},
              "test": {"bee": 2}}
    spec = SplitSpec(min_split_size=3)
    assert coverage_warnings(counts, spec) == [
        "split 'test' has 2 sample(s), fewer than min_split_size 3",
        "1 of 3 classes have no 'val' sample (ant)",
        "2 of 3 classes have no 'test' sample (ant, cat)"]
    held_out = SplitSpec(min_split_size=3, group_identities=True)   # identities kept whole
    assert coverage_warnings(counts, held_out) == [
        "split 'test' has 2 sample(s), fewer than min_split_size 3"]
    assert coverage_warnings({"train": {"a": 8}, "val": {"a": 1}, "test": {"a": 1}},
                             SplitSpec()) == []
    with pytest.raises(ConfigError, match="min_split_size"):
        SplitSpec(min_split_size=-1)


def test_the_class_balance_chart_fits_the_page_at_many_classes():
    import io

    from PIL import Image

    from ml.splits import class_balance_png
    counts = {split: {f"identity_{i:03d}": 5 + i % 7 for i in range(120)}
              for split in ("train", "val", "test")}
    width, height = Image.open(io.BytesIO(class_balance_png(counts))).size
    assert width <= 1000 and height <= 400


def test_the_class_balance_chart_draws_every_split_without_matplotlib():
    """The splits step's chart is Pillow's: matplotlib's import and first figure cost ~0.8 s
    of the step at a million samples."""
    import subprocess
    import sys
    code = ("import io, sys\n"
            "from PIL import Image\n"
            "from ml.splits import class_balance_png\n"
            "png = class_balance_png({'train': {'a': 80, 'b': 8}, 'val': {'a': 10}, 'test': {'b': 1}})\n"
            "image = Image.open(io.BytesIO(png)).convert('RGB')\n"
            "colours = {c for _, c in image.getcolors(1 << 16)}\n"
            "print(all(c in colours for c in [(31, 119, 180), (255, 127, 14), (44, 160, 44)]),\n"
            "      'matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"], "a bar of every split's colour, no matplotlib"


def test_the_preview_shows_many_classes_per_split():
    from ml.splits import preview_rows
    frame = pd.DataFrame({"split": ["train"] * 30 + ["val"] * 6,
                          "label": [f"id{i // 10}" for i in range(30)] + ["a", "a", "b", "c", "c", "d"],
                          "file": [f"{i}.jpg" for i in range(36)]})
    rows = preview_rows(frame, per_split=4)
    train = rows.loc[rows["split"] == "train", "label"].tolist()
    assert train[:3] == ["id0", "id1", "id2"] and len(train) == 4      # every class first
    assert rows.loc[rows["split"] == "val", "label"].tolist() == ["a", "b", "c", "d"]
    assert rows["split"].tolist() == ["train"] * 4 + ["val"] * 4
