"""Whether an identifier lies inside the images folder, decided once per folder (a string
prefix test on the folder's real path) and per file only when the file is a symlink."""

from __future__ import annotations

import os

import pytest

from ml.safe_paths import InsideRoot


@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "images", tmp_path / "elsewhere"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    (root / "a" / "x.jpg").write_bytes(b"x")
    (outside / "secret.jpg").write_bytes(b"s")
    (root / "out_link").symlink_to(outside)                       # a folder leading out
    (root / "in_link").symlink_to(root / "a")                     # a folder staying in
    (root / "a" / "leak.jpg").symlink_to(outside / "secret.jpg")  # a file leading out
    (root / "a" / "alias.jpg").symlink_to(root / "a" / "x.jpg")   # a file staying in
    (tmp_path / "images2").mkdir()                                # shares the root's prefix
    return root


@pytest.mark.parametrize("identifier, ok, why", [
    ("a/x.jpg", True, ""),
    ("a/missing.jpg", True, ""),                  # existence is the verification's business
    ("a/../a/x.jpg", True, ""),
    ("in_link/x.jpg", True, ""),
    ("a/alias.jpg", True, ""),
    ("out_link/secret.jpg", False, "symlink resolves outside"),
    ("a/leak.jpg", False, "symlink resolves outside"),
    ("../images2/x.jpg", False, "'..' climbs out"),
    ("a/../../x.jpg", False, "'..' climbs out"),
    ("/etc/passwd", False, "absolute path"),
    ("C:\\x.jpg", False, "absolute path"),
    ("", False, "empty identifier"),
    ("a/\x00.jpg", False, "NUL byte"),
    (".", False, "images folder itself"),
])
def test_identifiers_inside_and_outside(tree, identifier, ok, why):
    inside = InsideRoot(tree)
    for _ in range(2):                            # the second time from the folder cache
        path, reason = inside.resolve(identifier)
        assert bool(path) is ok and why in reason
        if ok:
            assert path == os.path.normpath(os.path.join(tree, identifier))


def test_a_relative_root_gives_absolute_paths(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    path, why = InsideRoot("images").resolve("a/x.jpg")
    assert why == "" and path == str(tree / "a" / "x.jpg")
