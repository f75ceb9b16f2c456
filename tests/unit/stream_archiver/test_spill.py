"""Spill directories: one per live worker, and what dead workers left is removed at start."""

from __future__ import annotations

from pathlib import Path

from workers.stream_archiver.spill import SpillDir


def test_a_dead_workers_directory_is_removed_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    dead = tmp_path / "123-deadbeef"
    dead.mkdir()
    (dead / ".lock").touch()  # nobody holds its lock: its process is gone
    (dead / "S1.1.wav").write_bytes(b"x" * 100)
    half = tmp_path / "124-cafecafe"
    half.mkdir()
    (half / ".lock.new").touch()  # died between locking and renaming its lock
    live = SpillDir(tmp_path)
    assert live.open() == 2
    assert not dead.exists() and not half.exists()
    path, handle = live.create("S2")
    handle.close()
    other = SpillDir(tmp_path)
    assert other.open() == 0  # the first one's lock is held: its files stay
    assert path.exists()
    other.close()
    live.close()
    assert list(tmp_path.iterdir()) == []


def test_files_get_distinct_names_for_the_same_stream(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    spill.open()
    first, a = spill.create("S1")
    second, b = spill.create("S1")
    a.close()
    b.close()
    assert first != second and first.parent == second.parent == spill.path
    spill.close()
