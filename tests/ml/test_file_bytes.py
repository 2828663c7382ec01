"""read_file_bytes: the packers' file reader returns exactly what open().read() does."""

import os
import threading

import pytest

from ml.file_bytes import FIRST_READ_BYTES, read_file_bytes


@pytest.mark.parametrize("size", [0, 1, 4321, FIRST_READ_BYTES - 1, FIRST_READ_BYTES,
                                  FIRST_READ_BYTES + 1, 3 * FIRST_READ_BYTES + 17, 2_000_003])
def test_reads_every_byte_of_files_of_any_size(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / f"f{size}.bin"
    path.write_bytes(data)
    assert read_file_bytes(path) == data
    assert read_file_bytes(str(path)) == data
    assert path.read_bytes() == data                 # the file is left as it was


def test_missing_file_and_directory_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        read_file_bytes(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(missing.value)
    with pytest.raises(IsADirectoryError) as folder:
        read_file_bytes(tmp_path)
    assert str(tmp_path) in str(folder.value)


def test_reads_a_pipe_to_its_end(tmp_path):
    """A file that cannot seek (a FIFO) larger than one read is still read whole."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = os.urandom(3 * FIRST_READ_BYTES + 5)

    def write() -> None:
        with open(fifo, "wb") as fh:
            fh.write(data)

    writer = threading.Thread(target=write, daemon=True)   # never blocks the session
    writer.start()
    try:
        assert read_file_bytes(fifo) == data
    finally:
        writer.join(timeout=10)
