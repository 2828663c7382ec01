"""stage_resize: geometry of each mode, correct RGB from awkward inputs, failures, incremental
re-runs, source safety, HDF5 members, the worker pool and seed 004's safe dimensions."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

import ml.resize as resize_mod
from ml.errors import ConfigError, DatasetError, ImageError, PathEscapeError
from ml.imageio import BOMB, EMPTY, MISSING, NOT_AN_IMAGE, TRUNCATED
from ml.process_pool import pool_context, thread_count
from ml.progress import Progress
from ml.atomic import RUNS_MARKED
from ml.resize import (
    MANIFEST_NAME, ResizeItem, ResizeSpec, check_safe_dimensions, nearest_safe_sizes,
    plan_geometry, round_to_safe, stage_resize,
)

RED, GREEN, BLUE, MAGENTA = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255)
STRETCH_PNG = {"mode": "stretch", "format": "png"}        # exact pixels, no JPEG noise


# ----------------------------------------------------------------------------- helpers

def item(path: Path, name: str | None = None, member: str = "") -> ResizeItem:
    name = name or Path(member or path.name).stem
    return ResizeItem(sample_id=name, path=str(path), output_name=name, member=member)


def pixels(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.int16)


def solid_bands(path: Path, size: tuple[int, int], bands: list[tuple[int, tuple]]) -> Path:
    """A PNG made of vertical bands: [(width, colour), ...] left to right."""
    img = Image.new("RGB", size)
    x = 0
    for width, colour in bands:
        img.paste(colour, (x, 0, x + width, size[1]))
        x += width
    img.save(path)
    return path


def photo_jpeg(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """Smooth colour fields, hard-edged shapes and noise: content a resizer can get wrong."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    arr = np.stack([128 + 80 * np.sin(xx / (20 + 15 * c) + c) * np.cos(yy / 25)
                    for c in range(3)], -1)
    for _ in range(12):
        x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
        arr[y0:y0 + rng.integers(10, 40), x0:x0 + rng.integers(10, 40)] = rng.integers(0, 256, 3)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    noisy = np.asarray(img, np.int16) + rng.normal(0, 4, (height, width, 3)).astype(np.int16)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def fingerprint_files(folder: Path) -> dict[str, tuple[str, int]]:
    """relative path -> (sha256, mtime_ns) of every file below `folder`."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def count_decodes(monkeypatch):
    """Every decode stage_resize starts: [draft size asked for, size decoded (None if it failed)]."""
    calls: list[list] = []
    real = resize_mod.load_rgb

    def counting(source, **kwargs):
        calls.append([kwargs.get("draft_size"), None])
        img = real(source, **kwargs)
        calls[-1][1] = img.size
        return img

    monkeypatch.setattr(resize_mod, "load_rgb", counting)
    return calls


# ----------------------------------------------------------------------------- geometry

def test_stretch_resizes_to_exactly_the_target(tmp_path, golden):
    out = tmp_path / "out"
    res = stage_resize([item(golden / "images/ok.jpg")], out, ResizeSpec(50, 70, mode="stretch"),
                       workers=1)
    assert Image.open(out / "ok.jpg").size == (50, 70)
    assert (res.outcomes[0].width, res.outcomes[0].height) == (50, 70)


def test_letterbox_keeps_aspect_and_pads_with_fill_centred(tmp_path):
    (tmp_path / "src").mkdir()
    src = solid_bands(tmp_path / "src" / "wide.png", (200, 100), [(200, RED)])
    spec = ResizeSpec(100, 100, mode="letterbox", fill=BLUE, format="png")
    stage_resize([item(src)], tmp_path / "out", spec, workers=1)
    px = pixels(tmp_path / "out" / "wide.png")
    assert px.shape == (100, 100, 3)
    assert (px[:25] == BLUE).all() and (px[75:] == BLUE).all()     # 25 rows of pad each side
    assert (px[25:75] == RED).all()                                  # 200x100 -> 100x50 content


def test_letterbox_pads_left_and_right_for_a_tall_image(tmp_path):
    (tmp_path / "src").mkdir()
    src = solid_bands(tmp_path / "src" / "tall.png", (50, 100), [(50, RED)])
    spec = ResizeSpec(100, 50, mode="letterbox", fill=GREEN, format="png")
    stage_resize([item(src)], tmp_path / "out", spec, workers=1)
    px = pixels(tmp_path / "out" / "tall.png")
    assert (px[:, :37] == GREEN).all() and (px[:, 63:] == GREEN).all()
    assert (px[:, 38:62] == RED).all()


def test_shorter_side_crop_fills_the_frame_with_the_centre(tmp_path):
    (tmp_path / "src").mkdir()
    src = solid_bands(tmp_path / "src" / "wide.png", (400, 200),
                      [(100, BLUE), (200, RED), (100, GREEN)])
    spec = ResizeSpec(100, 100, mode="shorter_side_crop", format="png")
    stage_resize([item(src)], tmp_path / "out", spec, workers=1)
    px = pixels(tmp_path / "out" / "wide.png")
    assert px.shape == (100, 100, 3)
    assert (np.abs(px[:, 1:-1] - RED).max(axis=2) <= 2).all()       # only the red centre is kept
    assert (px[:, [0, -1], 0] > 200).all()        # the filter reaches a little past the crop edge


def test_plan_geometry_handles_extreme_aspect_ratios():
    geo = plan_geometry(10_000, 3, ResizeSpec(64, 64, mode="letterbox"))
    assert geo.size == (64, 1) and geo.offset == (0, 31)
    crop = plan_geometry(300, 100, ResizeSpec(50, 50, mode="shorter_side_crop"))
    assert crop.box == pytest.approx((100.0, 0.0, 200.0, 100.0))
    assert crop.draft == (150, 50)


# ----------------------------------------------------------------------------- awkward inputs

def resize_golden(golden: Path, tmp_path: Path, name: str, spec: ResizeSpec) -> np.ndarray:
    res = stage_resize([item(golden / "images" / name, "x")], tmp_path / "out", spec, workers=1)
    assert res.outcomes[0].status == "resized", res.outcomes[0]
    return pixels(res.outcomes[0].output)


def test_every_readable_golden_image_becomes_rgb_of_the_target_size(tmp_path, golden):
    names = ["ok.jpg", "progressive.jpg", "grayscale.jpg", "cmyk.jpg", "exif_rotate90.jpg",
             "rgba.png", "palette_transparency.png", "gray16.png", "photo.webp", "animated.gif",
             "jpeg_named.png"]
    res = stage_resize([item(golden / "images" / n) for n in names], tmp_path / "out",
                       ResizeSpec(48, 40, mode="letterbox"), workers=1)
    assert [o.status for o in res.outcomes] == ["resized"] * len(names)
    for o in res.outcomes:
        img = Image.open(o.output)
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (48, 40))


def test_gray16_is_scaled_not_clipped(tmp_path, golden):
    px = resize_golden(golden, tmp_path, "gray16.png", ResizeSpec(60, 45, **STRETCH_PNG))
    assert px.min() <= 5 and px.max() >= 250
    assert (px == 255).mean() < 0.05              # convert('L') would saturate almost everything


def test_exif_rotated_image_comes_out_upright(tmp_path, golden):
    ok = np.asarray(Image.open(golden / "images/ok.jpg").convert("RGB"), np.int16)
    px = resize_golden(golden, tmp_path, "exif_rotate90.jpg", ResizeSpec(90, 120, **STRETCH_PNG))
    assert px.shape == (120, 90, 3)
    assert np.abs(px - np.rot90(ok, -1)).mean() < 2.0


def test_exif_rotated_image_letterboxes_as_portrait(tmp_path, golden):
    px = resize_golden(golden, tmp_path, "exif_rotate90.jpg",
                       ResizeSpec(120, 120, mode="letterbox", fill=MAGENTA, format="png"))
    assert (px[:, :14] == MAGENTA).all() and (px[:, 106:] == MAGENTA).all()
    assert not (px[:, 20:100] == MAGENTA).all(axis=2).any()


def test_cmyk_is_not_inverted(tmp_path, golden):
    spec = ResizeSpec(60, 45, **STRETCH_PNG)
    cmyk = resize_golden(golden, tmp_path / "a", "cmyk.jpg", spec)
    ok = resize_golden(golden, tmp_path / "b", "ok.jpg", spec)
    assert np.abs(cmyk - ok).mean() < 20          # inverted would be ~90 away
    assert np.abs(cmyk.mean(axis=(0, 1)) - ok.mean(axis=(0, 1))).max() < 10


def test_palette_transparency_is_composited_onto_fill(tmp_path, golden):
    source = np.asarray(Image.open(golden / "images/palette_transparency.png").convert("RGBA"))
    transparent = source[..., 3] == 0
    px = resize_golden(golden, tmp_path, "palette_transparency.png",
                       ResizeSpec(120, 90, mode="stretch", fill=GREEN, format="png"))
    assert transparent.sum() > 0
    assert (px[transparent] == GREEN).all()
    assert not (px[~transparent] == GREEN).all(axis=1).all()


def test_animated_gif_uses_the_first_frame(tmp_path, golden):
    px = resize_golden(golden, tmp_path, "animated.gif", ResizeSpec(40, 30, **STRETCH_PNG))
    assert px[..., 2].mean() < 30                 # frame 0 is the one without blue


def test_grayscale_jpeg_becomes_equal_channel_rgb(tmp_path, golden):
    px = resize_golden(golden, tmp_path, "grayscale.jpg", ResizeSpec(60, 45, **STRETCH_PNG))
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()


# ----------------------------------------------------------------------------- speed path quality

def test_jpeg_is_decoded_at_reduced_size_and_matches_the_naive_path(tmp_path, count_decodes):
    (tmp_path / "src").mkdir()
    src = photo_jpeg(tmp_path / "src" / "photo.jpg", 800, 600)
    for spec in (ResizeSpec(200, 150, **STRETCH_PNG),
                 ResizeSpec(190, 190, mode="letterbox", format="png"),
                 ResizeSpec(130, 170, mode="shorter_side_crop", format="png")):
        out = tmp_path / spec.mode
        stage_resize([item(src)], out, spec, workers=1)
        full = Image.open(src).convert("RGB")
        geo = plan_geometry(800, 600, spec)
        naive = Image.new("RGB", (spec.width, spec.height), spec.fill)
        naive.paste(full.resize(geo.size, Image.Resampling.LANCZOS, box=geo.box), geo.offset)
        assert psnr(pixels(out / "photo.png"), np.asarray(naive)) >= 40, spec.mode
    decoded_sizes = [size for _, size in count_decodes]
    assert all(w < 800 and h < 600 for w, h in decoded_sizes)    # DCT-domain downscale was used


# ----------------------------------------------------------------------------- failures

BAD = {"bomb_30000x30000.png": BOMB, "truncated.jpg": TRUNCATED, "zero_bytes.jpg": EMPTY,
       "not_an_image.jpg": NOT_AN_IMAGE, "no_such_file.jpg": MISSING}


def test_bad_images_become_failed_outcomes_with_the_reason(tmp_path, golden):
    items = [item(golden / "images" / n) for n in BAD] + [item(golden / "images/ok.jpg")]
    res = stage_resize(items, tmp_path / "out", ResizeSpec(32, 32), workers=1)
    assert {o.sample_id: o.reason for o in res.outcomes if o.status == "failed"} == \
        {Path(n).stem: r for n, r in BAD.items()}
    assert (res.failed, res.processed) == (len(BAD), 1)
    assert all(o.output == "" for o in res.outcomes if o.status == "failed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST_NAME, "ok.jpg"]
    frame = res.frame
    assert list(frame.columns) == ["sample_id", "output", "width", "height", "status", "reason"]
    assert frame.set_index("sample_id").loc["truncated", "reason"] == TRUNCATED


@pytest.mark.parametrize("name", list(BAD))
def test_on_error_raises_image_error_naming_the_file(tmp_path, golden, name):
    with pytest.raises(ImageError) as info:
        stage_resize([item(golden / "images" / name)], tmp_path / "out", ResizeSpec(32, 32),
                     workers=1, on_error="error")
    assert info.value.reason == BAD[name]
    assert name in str(info.value)


def test_on_error_keeps_the_work_done_before_the_failure(tmp_path, golden, count_decodes):
    items = [item(golden / "images/ok.jpg"), item(golden / "images/truncated.jpg")]
    with pytest.raises(ImageError):
        stage_resize(items, tmp_path / "out", ResizeSpec(32, 32), workers=1, on_error="error")
    res = stage_resize(items[:1], tmp_path / "out", ResizeSpec(32, 32), workers=1)
    assert res.unchanged == 1 and len(count_decodes) == 2


# ----------------------------------------------------------------------------- formats

def test_png_and_jpeg_outputs(tmp_path, golden):
    src = golden / "images/ok.jpg"
    for fmt, ext, quality in (("png", ".png", 95), ("jpeg", ".jpg", 95), ("jpeg", ".jpg", 20)):
        out = tmp_path / f"{fmt}{quality}"
        res = stage_resize([item(src)], out, ResizeSpec(100, 80, format=fmt, quality=quality),
                           workers=1)
        path = Path(res.outcomes[0].output)
        assert path == out / f"ok{ext}"
        assert Image.open(path).format == {"png": "PNG", "jpeg": "JPEG"}[fmt]
        assert res.bytes_written == path.stat().st_size
    assert (tmp_path / "jpeg20/ok.jpg").stat().st_size < (tmp_path / "jpeg95/ok.jpg").stat().st_size


def test_outputs_go_to_nested_names_and_leave_no_temporary_files(tmp_path, golden):
    items = [ResizeItem("a", str(golden / "images/ok.jpg"), "id_0001/03"),
             ResizeItem("b", str(golden / "images/photo.webp"), "id_0002/deep/01")]
    stage_resize(items, tmp_path / "out", ResizeSpec(32, 32), workers=1)
    assert sorted(f for f in fingerprint_files(tmp_path / "out")
                  if not f.startswith(MANIFEST_NAME + "/")) == ["id_0001/03.jpg", "id_0002/deep/01.jpg"]
    assert sorted(f.name for f in (tmp_path / "out" / MANIFEST_NAME).iterdir()) == [
        "base-00000001.parquet", RUNS_MARKED]


# ----------------------------------------------------------------------------- incremental

@pytest.fixture
def sources(tmp_path, golden) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for name in ("ok.jpg", "photo.webp", "rgba.png", "grayscale.jpg"):
        shutil.copy2(golden / "images" / name, folder / name)
    return folder


def test_rerun_with_unchanged_inputs_does_no_image_work(tmp_path, sources, count_decodes):
    items = [item(p) for p in sorted(sources.iterdir())]
    spec, out = ResizeSpec(40, 40), tmp_path / "out"
    first = stage_resize(items, out, spec, workers=1)
    before = fingerprint_files(out)
    again = stage_resize(items, out, spec, workers=1)
    assert (first.processed, again.processed, again.unchanged) == (4, 0, 4)
    assert len(count_decodes) == 4
    assert [o.status for o in again.outcomes] == ["unchanged"] * 4
    assert [o.output for o in again.outcomes] == [o.output for o in first.outcomes]
    assert fingerprint_files(out) == before          # the manifest too: nothing changed


def test_changed_spec_redoes_everything(tmp_path, sources, count_decodes):
    items = [item(p) for p in sorted(sources.iterdir())]
    stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1)
    res = stage_resize(items, tmp_path / "out", ResizeSpec(40, 40, fill=(9, 9, 9)), workers=1)
    assert (res.processed, res.unchanged) == (4, 0) and len(count_decodes) == 8


def test_changed_source_and_deleted_output_are_redone_alone(tmp_path, sources, count_decodes):
    items = [item(p) for p in sorted(sources.iterdir())]
    out = tmp_path / "out"
    stage_resize(items, out, ResizeSpec(40, 40), workers=1)
    Image.new("RGB", (30, 30), RED).save(sources / "rgba.png")        # user edits a source
    (out / "ok.jpg").unlink()                                          # someone deletes an output
    res = stage_resize(items, out, ResizeSpec(40, 40), workers=1)
    status = {o.sample_id: o.status for o in res.outcomes}
    assert status == {"grayscale": "unchanged", "ok": "resized", "photo": "unchanged",
                      "rgba": "resized"}
    assert len(count_decodes) == 6
    assert np.abs(pixels(out / "rgba.jpg")[20, 20] - RED).max() < 10


def test_deleted_outputs_are_found_by_listing_their_folders(tmp_path, sources, monkeypatch):
    """Many outputs are checked by one listing per folder instead of a stat each."""
    monkeypatch.setattr(resize_mod, "LIST_OUTPUTS_FROM", 1)
    items = [ResizeItem(p.stem, str(p), f"{'a' if i < 2 else 'b'}/{p.stem}")
             for i, p in enumerate(sorted(sources.iterdir()))]
    out = tmp_path / "out"
    stage_resize(items, out, ResizeSpec(40, 40), workers=1)
    (out / "a" / "grayscale.jpg").unlink()
    shutil.rmtree(out / "b")
    res = stage_resize(items, out, ResizeSpec(40, 40), workers=1)
    assert {o.sample_id: o.status for o in res.outcomes} == {
        "grayscale": "resized", "ok": "unchanged", "photo": "resized", "rgba": "resized"}


def test_outputs_no_longer_produced_are_removed(tmp_path, sources):
    items = [ResizeItem(p.stem, str(p), f"cls/{p.stem}") for p in sorted(sources.iterdir())]
    out = tmp_path / "out"
    stage_resize(items, out, ResizeSpec(40, 40), workers=1)
    stage_resize(items[:1], out, ResizeSpec(40, 40), workers=1)
    assert sorted(p.name for p in (out / "cls").iterdir()) == ["grayscale.jpg"]
    stage_resize(items[:1], out, ResizeSpec(40, 40, format="png"), workers=1)
    assert sorted(p.name for p in (out / "cls").iterdir()) == ["grayscale.png"]
    stage_resize([], out, ResizeSpec(40, 40), workers=1)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME]    # empty folders pruned too


def test_a_source_that_turns_bad_loses_its_old_output(tmp_path, sources):
    items = [item(sources / "ok.jpg")]
    stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1)
    (sources / "ok.jpg").write_bytes(b"not a jpeg any more")
    res = stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1)
    assert res.outcomes[0].reason == NOT_AN_IMAGE
    assert not (tmp_path / "out" / "ok.jpg").exists()


def test_remembered_failures_cost_no_decode(tmp_path, golden, count_decodes):
    items = [item(golden / "images/truncated.jpg")]
    stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1)
    res = stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1)
    assert (res.failed, res.outcomes[0].reason) == (1, TRUNCATED)
    with pytest.raises(ImageError, match="truncated"):
        stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1, on_error="error")
    assert len(count_decodes) == 1


def test_an_unreadable_manifest_means_redoing_everything(tmp_path, sources, count_decodes):
    items = [item(p) for p in sorted(sources.iterdir())]
    stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1)
    for part in (tmp_path / "out" / MANIFEST_NAME).iterdir():
        part.write_bytes(b"not parquet")
    res = stage_resize(items, tmp_path / "out", ResizeSpec(40, 40), workers=1)
    assert res.processed == 4


# ----------------------------------------------------------------------------- source safety

def test_sources_are_never_modified(tmp_path, golden_copy):
    images = golden_copy("images")
    before = fingerprint_files(images)
    items = [item(p) for p in sorted(images.iterdir()) if p.suffix != ".json"]
    for spec in (ResizeSpec(32, 32), ResizeSpec(32, 32, **STRETCH_PNG)):
        stage_resize(items, tmp_path / "out", spec, workers=1)
    stage_resize(items[:2], tmp_path / "out", ResizeSpec(32, 32), workers=1)   # removes outputs
    assert fingerprint_files(images) == before


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_output_folder_overlapping_the_sources_is_refused(tmp_path, sources, where):
    out = {"same": sources, "inside": sources / "resized", "contains": tmp_path}[where]
    before = fingerprint_files(tmp_path)
    with pytest.raises(ConfigError, match="source"):
        stage_resize([item(sources / "ok.jpg")], out, ResizeSpec(32, 32), workers=1)
    assert fingerprint_files(tmp_path) == before


def test_bad_output_names_and_options_are_refused(tmp_path, sources):
    ok = str(sources / "ok.jpg")
    with pytest.raises(PathEscapeError):
        stage_resize([ResizeItem("a", ok, "../escape")], tmp_path / "out", ResizeSpec(8, 8))
    with pytest.raises(PathEscapeError):
        stage_resize([ResizeItem("a", ok, "/abs/x")], tmp_path / "out", ResizeSpec(8, 8))
    with pytest.raises(ConfigError, match="both"):
        stage_resize([ResizeItem("a", ok, "x"), ResizeItem("b", ok, "x")], tmp_path / "out",
                     ResizeSpec(8, 8))
    with pytest.raises(ConfigError, match="on_error"):
        stage_resize([], tmp_path / "out", ResizeSpec(8, 8), on_error="ignore")
    with pytest.raises(ConfigError, match="workers"):
        stage_resize([], tmp_path / "out", ResizeSpec(8, 8), workers=0)
    for bad in ({"width": 0}, {"mode": "fit"}, {"format": "gif"}, {"quality": 101}, {"fill": (0, 0)}):
        with pytest.raises(ConfigError):
            ResizeSpec(**{"width": 8, "height": 8, **bad})


def test_a_symlinked_output_subfolder_cannot_lead_into_the_sources(tmp_path, sources):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cls").symlink_to(sources)
    with pytest.raises(PathEscapeError):
        stage_resize([ResizeItem("a", str(sources / "ok.jpg"), "cls/ok")], out, ResizeSpec(8, 8))
    assert not (sources / "ok.jpg.jpg").exists() and sorted(p.name for p in sources.iterdir()) == \
        ["grayscale.jpg", "ok.jpg", "photo.webp", "rgba.png"]


# ----------------------------------------------------------------------------- HDF5 members

def h5_items(container: Path) -> list[ResizeItem]:
    with h5py.File(container, "r") as h5:
        keys = [f"{c}/{n}" for c in sorted(h5) for n in sorted(h5[c])]
    return [ResizeItem(k, str(container), os.path.splitext(k)[0], member=k) for k in keys]


def test_hdf5_members_are_resized_and_the_container_is_untouched(tmp_path, golden_copy,
                                                                count_decodes):
    container = golden_copy("hdf5") / "sequences.h5"
    before = fingerprint_files(container.parent)
    gone = ResizeItem("gone", str(container), "gone", member="bottle/nope.jpg")
    items, spec = h5_items(container) + [gone], ResizeSpec(32, 32, **STRETCH_PNG)
    res = stage_resize(items, tmp_path / "out", spec, workers=1)
    assert res.processed == 20
    assert [o.reason for o in res.outcomes if o.status == "failed"] == [MISSING]
    with h5py.File(container, "r") as h5:
        raw = Image.open(io.BytesIO(h5["chair/obj1_002.jpg"][()].tobytes())).convert("RGB")
    expected = np.asarray(raw.resize((32, 32), Image.Resampling.LANCZOS), np.int16)
    assert psnr(pixels(tmp_path / "out/chair/obj1_002.png"), expected) >= 35   # DCT-scaled decode
    assert fingerprint_files(container.parent) == before
    again = stage_resize(items, tmp_path / "out", spec, workers=1)
    assert again.unchanged == 20 and len(count_decodes) == 20
    with h5py.File(container, "r+"):              # no handle left open by the run
        pass


# ----------------------------------------------------------------------------- worker pool

def test_two_workers_produce_the_same_files_as_one(tmp_path, sources, golden_copy):
    container = golden_copy("hdf5") / "sequences.h5"
    items = [item(p) for p in sorted(sources.iterdir())] + h5_items(container)[:6] + \
        [item(sources / "missing.jpg")]
    spec = ResizeSpec(40, 30, mode="shorter_side_crop")
    progress = Progress(len(items), "resize", interval=3600)
    pooled = stage_resize(items, tmp_path / "two", spec, workers=2, progress=progress)
    single = stage_resize(items, tmp_path / "one", spec, workers=1)
    assert progress.done == len(items)
    assert [(o.sample_id, o.status, o.reason) for o in pooled.outcomes] == \
        [(o.sample_id, o.status, o.reason) for o in single.outcomes]
    assert pooled.processed == 10 and pooled.failed == 1
    for a, b in zip(pooled.outcomes, single.outcomes):
        if a.output:
            assert Path(a.output).read_bytes() == Path(b.output).read_bytes()
    with pytest.raises(ImageError, match="missing"):
        stage_resize(items, tmp_path / "three", spec, workers=2, on_error="error")


def test_pool_starts_safely_when_the_caller_runs_threads(tmp_path, sources):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)   # as in a Dagster step process
    thread.start()
    try:
        assert thread_count() >= 2
        assert pool_context().get_start_method() != "fork"
        items = [item(p) for p in sorted(sources.iterdir())]
        res = stage_resize(items, tmp_path / "out", ResizeSpec(24, 24), workers=2)
    finally:
        stop.set()
        thread.join()
    assert res.processed == 4


# ----------------------------------------------------------------------------- spec and safe sizes

def test_fingerprint_is_stable_and_covers_every_field():
    base = ResizeSpec(64, 48)
    assert base.fingerprint() == ResizeSpec(64, 48, fill=[0, 0, 0]).fingerprint()
    variants = [ResizeSpec(65, 48), ResizeSpec(64, 49), ResizeSpec(64, 48, mode="stretch"),
                ResizeSpec(64, 48, fill=(1, 0, 0)), ResizeSpec(64, 48, format="png"),
                ResizeSpec(64, 48, quality=90)]
    assert len({base.fingerprint(), *(v.fingerprint() for v in variants)}) == 7


def test_safe_dimension_helpers():
    assert nearest_safe_sizes(1283, 3) == (1280, 1288)
    assert nearest_safe_sizes(1280, 3) == (1280, 1280)
    assert nearest_safe_sizes(5, 3) == (8, 8)                 # never below 2**depth
    assert round_to_safe(1283, 3) == 1280 and round_to_safe(1285, 3) == 1288
    assert round_to_safe(1284, 3) == 1288                     # a tie goes up
    assert round_to_safe(1921, 0) == 1921
    assert check_safe_dimensions(1920, 1280, 5) == []
    problems = check_safe_dimensions(1921, 1280, 4)
    assert len(problems) == 1
    assert all(part in problems[0] for part in ("width 1921", "1920", "1936"))
    assert len(check_safe_dimensions(225, 227, 2)) == 2
    with pytest.raises(ConfigError):
        round_to_safe(100, -1)


def test_a_crashing_worker_is_reported_and_finished_work_kept(tmp_path, sources, monkeypatch,
                                                            fork_anyway):
    # The crash is injected by patching the parent, which only fork workers inherit: fork even
    # if native threads (torch's, from earlier tests) run, as this test always has.
    if pool_context().get_start_method() != "fork":
        pytest.skip("this platform cannot fork")
    real = resize_mod.resize_image

    def crash_on_rgba(item, spec):
        if item.sample_id == "rgba":
            os._exit(1)                           # what a segfaulting decoder looks like
        return real(item, spec)

    monkeypatch.setattr(resize_mod, "resize_image", crash_on_rgba)
    items = [item(p) for p in sorted(sources.iterdir())]
    with pytest.raises(DatasetError, match="worker process died"):
        stage_resize(items, tmp_path / "out", ResizeSpec(16, 16), workers=2)
    assert (tmp_path / "out" / MANIFEST_NAME).exists()


AWKWARD_NAMES = ["a.b.c", "..b.c", ".b", "a.", "dir.x/file", "a/b.jpg", "a", "a/.b", "a/..b.c",
                 "...", "a/b.", "x/y/z.tar.gz", "é/ü.JPG", "a b/c d.png", "id_1/03.jpeg",
                 "c:\\x.jpg", "new\nline.png"]


def test_output_names_of_a_column_are_splitext_of_each():
    from ml.resize import output_names
    assert output_names(AWKWARD_NAMES).to_pylist() == [os.path.splitext(n)[0] for n in AWKWARD_NAMES]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab./\\ \n", max_size=12))
def test_output_names_agree_with_splitext_on_any_text(name):
    from ml.resize import output_names
    assert output_names([name]).to_pylist() == [os.path.splitext(name)[0]]


def test_a_long_run_checkpoints_its_manifest_every_few_thousand_rows(tmp_path, sources, monkeypatch):
    """At 1M images a minute of outcomes is ~170,000 manifest rows held as Python tuples
    (~120 MB): a checkpoint also comes after CHECKPOINT_ROWS rows."""
    import ml.resize as resize
    from ml.resize_manifest import ResizeManifest
    monkeypatch.setattr(resize, "CHECKPOINT_ROWS", 2)
    waiting = []
    real_save = ResizeManifest.save
    monkeypatch.setattr(ResizeManifest, "save",
                        lambda self: waiting.append(self.unsaved) or real_save(self))
    items = [item(p) for p in sorted(sources.iterdir())]
    res = stage_resize(items, tmp_path / "out", ResizeSpec(16, 16), workers=1)
    assert res.processed == 4
    assert [n for n in waiting if n] == [2, 2]         # two checkpoints of two rows each
