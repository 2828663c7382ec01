"""The checksum registry: first sightings persist, changes are described, writes are all-or-nothing."""

from __future__ import annotations

import hashlib

import pytest

from ml.checksums import (ChecksumEntry, ChecksumRegistry, content_difference, sha256_hex,
                          stat_difference)
from ml.errors import ConfigError
from ml.file_stats import NO_MTIME


def entry(identifier: str, size: int = 10, mtime_ns: int | None = 5, data: bytes = b"x",
          first_seen: str = "2025-04-15 18:43:00") -> ChecksumEntry:
    return ChecksumEntry(identifier, size, mtime_ns, sha256_hex(data), first_seen)


def test_entries_persist_across_reopening(tmp_path):
    path = tmp_path / "nested" / "checksums.sqlite"
    with ChecksumRegistry(path) as registry:
        registry.record([entry("a.jpg"), entry("id_1/b.jpg", mtime_ns=None)])
    with ChecksumRegistry(path) as registry:
        assert len(registry) == 2
        assert registry.get("a.jpg") == entry("a.jpg")
        assert registry.get("id_1/b.jpg").mtime_ns is None
        assert registry.get("absent.jpg") is None


def test_get_many_beyond_sqlite_parameter_limit(tmp_path):
    with ChecksumRegistry(tmp_path / "c.sqlite") as registry:
        registry.record(entry(f"{i}.jpg") for i in range(2500))
        found = registry.get_many(f"{i}.jpg" for i in range(0, 3000, 2))
        assert len(found) == 1250 and "2498.jpg" in found
        assert registry.forget(f"{i}.jpg" for i in range(2000)) == 2000
        assert len(registry) == 500


def test_refresh_keeps_hash_and_first_seen_record_replaces_them(tmp_path):
    with ChecksumRegistry(tmp_path / "c.sqlite") as registry:
        registry.record([entry("a.jpg")])
        registry.refresh_stats([("a.jpg", 11, 99)])
        refreshed = registry.get("a.jpg")
        assert (refreshed.size, refreshed.mtime_ns) == (11, 99)
        assert (refreshed.sha256, refreshed.first_seen) == (sha256_hex(b"x"), "2025-04-15 18:43:00")
        registry.record([entry("a.jpg", data=b"y", first_seen="2026-01-01 00:00:00")])
        assert registry.get("a.jpg").sha256 == sha256_hex(b"y")
        assert registry.get("a.jpg").first_seen == "2026-01-01 00:00:00"


def test_a_failing_batch_records_nothing(tmp_path):
    with ChecksumRegistry(tmp_path / "c.sqlite") as registry:
        bad = ChecksumEntry("b.jpg", 1, 1, None, "2025-01-01 00:00:00")  # type: ignore[arg-type]
        with pytest.raises(Exception):
            registry.record([entry("a.jpg"), bad])
        assert len(registry) == 0


def test_damaged_registry_is_a_config_error(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot be opened as SQLite"):
        ChecksumRegistry(path)


def test_differences_say_what_changed():
    recorded = entry("a.jpg", size=10, mtime_ns=5)
    assert stat_difference(recorded, 10, 5) == ""
    assert stat_difference(recorded, 12, 5) == "size 10 -> 12 bytes"
    assert stat_difference(recorded, 10, 6) == "modification time differs"
    assert stat_difference(entry("m", mtime_ns=None), 10, None) == ""   # container members
    assert content_difference(recorded, sha256_hex(b"x")) == ""
    assert "differs from" in content_difference(recorded, sha256_hex(b"z"))
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize("asked", [30, 2400])     # IN queries for a few keys, one scan for many
def test_lookup_aligns_entries_with_the_keys_asked(tmp_path, asked):
    with ChecksumRegistry(tmp_path / "c.sqlite") as registry:
        registry.record(entry(f"{i}.jpg", size=i, mtime_ns=None if i % 7 == 0 else 1000 + i,
                              data=str(i).encode()) for i in range(0, 2500))
        keys = [f"{i}.jpg" for i in range(2500 - asked, 2500 + asked, 2)][::-1]  # half unknown
        recorded = registry.lookup(keys)
    for k, key in enumerate(keys):
        i = int(key.split(".")[0])
        assert recorded.known[k] == (i < 2500)
        if i < 2500:
            assert recorded.size[k] == i
            assert recorded.mtime_ns[k] == (NO_MTIME if i % 7 == 0 else 1000 + i)
            assert recorded.sha256[k].as_py() == sha256_hex(str(i).encode())
        else:
            assert recorded.sha256[k].as_py() == "" and recorded.size[k] == -1


def test_lookup_in_an_empty_registry_knows_nothing(tmp_path):
    with ChecksumRegistry(tmp_path / "c.sqlite") as registry:
        recorded = registry.lookup(["a.jpg", "b.jpg"])
    assert not recorded.known.any() and len(recorded.sha256) == 2
