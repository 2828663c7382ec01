"""The runtime fallback: placeholders only when allowed, always counted, logged without spam."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from PIL import Image

from ml.errors import ImageError
from ml.imageio import EMPTY, MISSING, TRUNCATED, UNSUPPORTED
from ml.missing import MissingImagePolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_good_image_loads_as_rgb_array(tmp_path):
    Image.new("L", (8, 6), 200).save(tmp_path / "a.png")
    image, placeholder = MissingImagePolicy(False).load(tmp_path / "a.png", (6, 8, 3))
    assert not placeholder and image.shape == (6, 8, 3) and image.dtype == np.uint8
    assert (image == 200).all()


def test_missing_and_undecodable_become_counted_placeholders(tmp_path, golden):
    policy = MissingImagePolicy(True, log=lambda m: None)
    for source, reason in [(tmp_path / "gone.jpg", MISSING),
                           (golden / "images/truncated.jpg", TRUNCATED),
                           (golden / "images/zero_bytes.jpg", EMPTY)]:
        image, placeholder = policy.load(source, (4, 5, 3))
        assert placeholder and image.shape == (4, 5, 3) and not image.any()
    policy.load(tmp_path / "gone.jpg", (2, 2), dtype=np.float32)
    assert policy.total() == 4
    assert policy.counts()[str(tmp_path / "gone.jpg")] == 2
    summary = policy.summary()
    assert summary.startswith("4 placeholder image(s) substituted for 3 unreadable file(s)")
    assert f"{tmp_path / 'gone.jpg'} (missing, 2x)" in summary


def test_without_allow_missing_the_error_names_the_file(tmp_path, golden):
    policy = MissingImagePolicy(False)
    with pytest.raises(ImageError, match="gone.jpg: missing") as info:
        policy.load(tmp_path / "gone.jpg", (4, 4, 3))
    assert "allow_missing_images" in str(info.value)
    with pytest.raises(ImageError, match="truncated.jpg: truncated"):
        policy.load(golden / "images/truncated.jpg", (4, 4, 3))
    assert policy.total() == 0


def test_loader_callables_and_their_errors(tmp_path):
    policy = MissingImagePolicy(True, log=lambda m: None)
    assert policy.load(lambda: "decoded", (1,)) == ("decoded", False)

    def broken_loader():
        raise OSError("unrecognized data stream contents when reading image file")

    image, placeholder = policy.load(broken_loader, (3,), name="shard-7:123")
    assert placeholder and policy.counts() == {"shard-7:123": 1}
    with pytest.raises(ImageError, match=f"shard-7:123: {UNSUPPORTED}"):
        MissingImagePolicy(False).load(broken_loader, (3,), name="shard-7:123")
    with pytest.raises(ValueError):  # a bug in the caller is not an image problem
        policy.load(lambda: int("x"), (3,))


def test_logging_is_rate_limited_with_a_running_count(tmp_path):
    clock, lines = FakeClock(), []
    policy = MissingImagePolicy(True, log_interval_s=5.0, log=lines.append, clock=clock)
    for step in range(100):
        clock.now = step * 0.1            # 100 failures over 10 seconds
        policy.load(tmp_path / f"gone_{step}.jpg", (1,))
    assert len(lines) == 2               # at t=0 and t=5
    assert lines[0].startswith("1 placeholder image(s) substituted so far")
    assert lines[1].startswith("51 placeholder image(s) substituted so far (51 file(s))")
    assert "gone_50.jpg" in lines[1]
    assert policy.total() == 100


def test_counts_are_exact_across_threads_and_reset_in_a_new_process(tmp_path):
    policy = MissingImagePolicy(True, log=lambda m: None)

    def work() -> None:
        for _ in range(200):
            policy.load(tmp_path / "gone.jpg", (1,))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert policy.total() == 800
    clone = pickle.loads(pickle.dumps(policy))   # what a DataLoader worker receives
    assert clone.total() == 0 and clone.allow_missing
    assert clone.load(tmp_path / "gone.jpg", (1,))[1] and clone.total() == 1


def test_summary_when_nothing_was_substituted():
    assert MissingImagePolicy(True).summary() == "no placeholder images were substituted"
