"""atomic_write: the new file whole, or the old one untouched."""

from __future__ import annotations

import pytest

from minillama.atomic import atomic_write


def test_bytes_text_and_writer(tmp_path):
    assert atomic_write(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "sub" / "b.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    atomic_write(tmp_path / "c.txt", lambda path: path.write_text("from a writer"))
    assert (tmp_path / "c.txt").read_text() == "from a writer"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.bin", "b.txt", "c.txt", "sub"]  # no temporaries


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = atomic_write(tmp_path / "config.toml", "old = 1\n")

    def half_then_crash(tmp):
        tmp.write_text("new = ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
