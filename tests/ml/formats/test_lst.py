"""im2rec .lst lists: im2rec's line format, strict reading, and pass-through packing."""

from __future__ import annotations

import pytest

from ml.errors import ImageError, PathEscapeError, SourceError
from ml.formats.lst import LstEntry, format_lst_line, pack_lst, read_lst, write_lst
from ml.formats.recordio import RecordIOReader, unpack_header


def test_lines_are_written_like_im2rec(tmp_path):
    entries = [LstEntry(0, (1.0,), "cat/a.jpg"), LstEntry(7, (2.0, 0.5, -1.25), "dog/b c.png")]
    assert write_lst(tmp_path / "x.lst", entries) == 2
    # im2rec.write_list: '%d\t' % index, '%f\t' per label, '%s\n' % path
    assert (tmp_path / "x.lst").read_text() == \
        "0\t1.000000\tcat/a.jpg\n7\t2.000000\t0.500000\t-1.250000\tdog/b c.png\n"
    assert read_lst(tmp_path / "x.lst") == entries


def test_reading_strips_columns_and_skips_blank_lines(tmp_path):
    (tmp_path / "x.lst").write_text("3\t 4 \t a/b.jpg \r\n\n5\t1e2\tc.jpg")
    assert read_lst(tmp_path / "x.lst") == [LstEntry(3, (4.0,), "a/b.jpg"),
                                           LstEntry(5, (100.0,), "c.jpg")]


@pytest.mark.parametrize("content, problem", [
    ("0\t1\ta.jpg\n1\tb.jpg\n", r"x.lst:2: bad .lst line.*2 tab-separated columns"),
    ("0\t1\ta.jpg\nx\t1\tb.jpg\n", r"x.lst:2: bad .lst line"),
    ("0\t1\ta.jpg\n0\t2\tb.jpg\n", r"x.lst:2: index 0 already used on line 1"),
])
def test_bad_lines_name_the_line(tmp_path, content, problem):
    (tmp_path / "x.lst").write_text(content)
    with pytest.raises(SourceError, match=problem):
        read_lst(tmp_path / "x.lst")


def test_unwritable_entries_are_refused():
    with pytest.raises(ValueError, match="cannot be written"):
        format_lst_line(LstEntry(0, (1.0,), "a\tb.jpg"))
    with pytest.raises(ValueError, match="has no label"):
        format_lst_line(LstEntry(0, (), "a.jpg"))


def test_pack_lst_reproduces_golden_plain_rec(golden, tmp_path):
    """plain.rec holds IRHeader(0, label, key, 0) + JPEG bytes: exactly im2rec --pass-through."""
    source = golden / "recordio" / "plain.rec"
    entries = []
    with RecordIOReader(source) as reader:
        for key, record in reader:
            header, payload = unpack_header(record)
            (tmp_path / "images").mkdir(exist_ok=True)
            (tmp_path / "images" / f"{key}.jpg").write_bytes(payload)
            entries.append(LstEntry(key, (header.label,), f"{key}.jpg"))
    write_lst(tmp_path / "plain.lst", entries)
    count = pack_lst(tmp_path / "plain.lst", tmp_path / "images", tmp_path / "out.rec",
                     tmp_path / "out.idx")
    assert count == 8
    assert (tmp_path / "out.rec").read_bytes() == source.read_bytes()
    assert (tmp_path / "out.idx").read_bytes() == source.with_suffix(".idx").read_bytes()


def test_pack_label_stores_label_arrays(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    write_lst(tmp_path / "x.lst", [LstEntry(4, (1.0, 2.5), "a.jpg")])
    pack_lst(tmp_path / "x.lst", tmp_path / "img", tmp_path / "one.rec", pack_label=False)
    pack_lst(tmp_path / "x.lst", tmp_path / "img", tmp_path / "all.rec", pack_label=True)
    first = unpack_header(RecordIOReader(tmp_path / "one.rec").read(0))
    every = unpack_header(RecordIOReader(tmp_path / "all.rec").read(0))
    assert (first[0].flag, first[0].label, first[0].id, first[1]) == (0, 1.0, 4, b"\xff\xd8jpeg")
    assert (every[0].flag, every[0].label.tolist()) == (2, [1.0, 2.5])


def test_pack_refuses_escaping_and_missing_paths(tmp_path):
    (tmp_path / "img").mkdir()
    write_lst(tmp_path / "x.lst", [LstEntry(0, (1.0,), "../secret.jpg")])
    with pytest.raises(PathEscapeError, match="climbs out"):
        pack_lst(tmp_path / "x.lst", tmp_path / "img", tmp_path / "x.rec")
    write_lst(tmp_path / "x.lst", [LstEntry(0, (1.0,), "gone.jpg")])
    with pytest.raises(ImageError, match="gone.jpg"):
        pack_lst(tmp_path / "x.lst", tmp_path / "img", tmp_path / "x.rec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "x.lst"]
