"""Image headers of many files: the simplejpeg fast path agrees with Pillow on every golden
image, bad files say what is wrong, and the process pool returns the same, in order."""

from __future__ import annotations

import os
import shutil

import pytest

from ml import headers
from ml.imageio import read_header


def _pillow(path):
    h = read_header(path)
    return ("ok", "", h.width, h.height, os.path.getsize(path))


@pytest.mark.parametrize("name", ["ok.jpg", "progressive.jpg", "grayscale.jpg", "cmyk.jpg",
                                  "exif_rotate90.jpg", "rgba.png", "photo.webp",
                                  "jpeg_named.png", "animated.gif"])
def test_header_matches_pillow_with_exif_orientation(golden, name):
    assert headers.file_header(str(golden / "images" / name)) == _pillow(golden / "images" / name)


def test_exif_rotated_jpeg_reports_its_upright_size(golden):
    _, _, w, h, _ = headers.file_header(str(golden / "images" / "exif_rotate90.jpg"))
    from PIL import Image
    stored_w, stored_h = Image.open(golden / "images" / "exif_rotate90.jpg").size
    assert (w, h) == (stored_h, stored_w) and w != h


@pytest.mark.parametrize("name, status, reason", [
    ("zero_bytes.jpg", "corrupt", "empty"),
    ("not_an_image.jpg", "corrupt", "not an image"),
    ("bomb_30000x30000.png", "corrupt", "decompression bomb"),
    ("absent.jpg", "missing", "no such file"),
])
def test_bad_files_say_what_is_wrong(golden, name, status, reason):
    got = headers.file_header(str(golden / "images" / name))
    assert got[:2] == (status, reason) and got[2] is None


def test_a_folder_named_like_an_image_is_corrupt(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    assert headers.file_header(str(tmp_path / "x.jpg"))[0] == "corrupt"


def test_process_pool_returns_the_same_headers_in_order(golden, tmp_path, monkeypatch):
    names = sorted(p.name for p in (golden / "images").iterdir() if p.suffix != ".json")
    paths = []
    for i in range(40):                       # 40 x ~16 files, chunks of 7: many tasks
        for n in names:
            dst = tmp_path / f"{i}_{n}"
            shutil.copyfile(golden / "images" / n, dst)
            paths.append(str(dst))
    paths.append(str(tmp_path / "absent.jpg"))
    serial = headers.read_headers(paths, workers=1)
    monkeypatch.setattr(headers, "CHUNK", 7)
    monkeypatch.setattr(headers, "PARALLEL_FROM", 10)
    from ml.progress import Progress
    progress = Progress(len(paths), "headers", emit=lambda m: None)
    pooled = headers.read_headers(paths, workers=2, progress=progress)
    for name in ("status", "reason", "width", "height", "size"):
        assert getattr(pooled, name).tolist() == getattr(serial, name).tolist()
    assert serial.status.tolist() == [headers.file_header(p)[0] for p in paths]
    assert serial.width.tolist() == [h[2] if h[2] is not None else -1
                                     for h in map(headers.file_header, paths)]
    assert progress.done == len(paths)
    assert serial.status[-1] == "missing" and serial.status[0] in ("ok", "corrupt")
