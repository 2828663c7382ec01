"""The project's errors survive pickling, so a worker process can hand them back intact."""

import pickle

from ml.errors import FormatError, ImageError


def test_errors_round_trip_through_pickle():
    img = pickle.loads(pickle.dumps(ImageError("/data/a.jpg", "truncated", "3 bytes short")))
    assert (img.path, img.reason, img.detail) == ("/data/a.jpg", "truncated", "3 bytes short")
    assert str(img) == "/data/a.jpg: truncated (3 bytes short)"
    fmt = pickle.loads(pickle.dumps(FormatError("/x/train.rec", 128, "bad magic")))
    assert (fmt.path, fmt.offset, fmt.problem) == ("/x/train.rec", 128, "bad magic")
    assert str(fmt) == "/x/train.rec at byte 128: bad magic"
