"""A changelog store: what a batch changed, last write per key, and only partitions it holds."""

from __future__ import annotations

import pytest

from workers.plumbing.changelog_store import ChangelogStore, StoreNotOwned


def test_changes_are_the_last_write_per_key_and_deletes_are_tombstones() -> None:
    store = ChangelogStore("s", "s-changelog", ["in"])
    store.adopt(2, {"old": b"1"})
    store.set(2, "a", b"x")
    store.set(2, "a", b"y")
    store.delete(2, "old")
    store.delete(2, "never-there")  # nothing to delete: no tombstone
    assert sorted(store.take_changes()) == [(2, b"a", b"y"), (2, b"old", None)]
    assert store.take_changes() == []
    assert store.get(2, "a") == b"y" and store.get(2, "old") is None
    assert len(store) == 1


def test_a_partition_not_held_is_refused_and_dropping_forgets_its_changes() -> None:
    store = ChangelogStore("s", "s-changelog", ["in"])
    with pytest.raises(StoreNotOwned):
        store.get(0, "a")
    store.adopt(0, {})
    store.set(0, "a", b"x")
    store.drop(0)
    assert store.owned == frozenset() and store.take_changes() == []
