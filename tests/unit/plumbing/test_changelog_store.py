"""A changelog store: what a batch changed, last write per key, and only partitions it holds;
on disk, only what the changelog acknowledged, with a checkpoint a restart continues from."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.plumbing.changelog_store import ChangelogStore, StoreNotOwned
from workers.plumbing.state_slot import StateSlot, StateSlotsTaken


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChangelogStore]:
    directory = tmp_path / "s" if request.param == "disk" else None
    made = ChangelogStore("s", "s-changelog", ["in"], directory=directory)
    yield made
    for partition in made.owned:
        made.drop(partition)


def _take_over(store: ChangelogStore, partition: int, data: dict[str, bytes]) -> None:
    """Restore ``partition`` as the core does, from a changelog holding ``data``."""
    assert store.open(partition, 0, len(data)) == 0
    store.apply(partition, [(k.encode(), v) for k, v in data.items()], len(data))
    store.restored(partition)


def test_changes_are_the_last_write_per_key_and_deletes_are_tombstones(
    store: ChangelogStore,
) -> None:
    _take_over(store, 2, {"old": b"1"})
    store.set(2, "a", b"x")
    store.set(2, "a", b"y")
    store.delete(2, "old")
    store.delete(2, "never-there")  # nothing to delete: no tombstone
    assert sorted(store.take_changes()) == [(2, b"a", b"y"), (2, b"old", None)]
    assert store.take_changes() == []
    assert store.get(2, "a") == b"y" and store.get(2, "old") is None
    assert dict(store.items(2)) == {"a": b"y"}


def test_a_partition_not_held_is_refused_and_dropping_forgets_its_changes(
    store: ChangelogStore,
) -> None:
    with pytest.raises(StoreNotOwned):
        store.get(0, "a")
    _take_over(store, 0, {})
    store.set(0, "a", b"x")
    store.drop(0)
    assert store.owned == frozenset() and store.take_changes() == []


def _disk(tmp_path: Path, max_age: float = 3600.0) -> ChangelogStore:
    return ChangelogStore(
        "s", "s-changelog", ["in"], directory=tmp_path / "s", max_checkpoint_age_s=max_age
    )


def test_on_disk_only_acknowledged_changes_survive_and_a_restart_reads_on_from_the_checkpoint(
    tmp_path: Path,
) -> None:
    first = _disk(tmp_path)
    _take_over(first, 1, {"kept": b"0", "gone": b"0"})
    first.set(1, "a", b"acked")
    first.delete(1, "gone")
    acked = [(k, v) for _, k, v in first.take_changes()]
    first.persisted(1, acked, next_offset=4)  # the changelog now holds offsets 0..3
    first.set(1, "b", b"never acknowledged")
    first.take_changes()
    first.drop(1)  # as after kill -9: the overlay is lost, the database is not

    again = _disk(tmp_path)
    assert again.open(1, 0, 6) == 4  # read offsets 4 and 5 only
    again.apply(1, [(b"b", b"from the changelog")], 6)
    again.restored(1)
    assert dict(again.items(1)) == {
        "kept": b"0",
        "a": b"acked",
        "b": b"from the changelog",
    }
    again.drop(1)


def test_a_persisted_change_does_not_hide_a_later_one_to_the_same_key(tmp_path: Path) -> None:
    store = _disk(tmp_path)
    _take_over(store, 0, {})
    store.set(0, "k", b"v1")
    first = [(k, v) for _, k, v in store.take_changes()]
    store.set(0, "k", b"v2")  # the next batch, before the first one's write is acknowledged
    store.persisted(0, first, 1)
    assert store.get(0, "k") == b"v2"
    second = [(k, v) for _, k, v in store.take_changes()]
    store.persisted(0, second, 2)
    assert store.get(0, "k") == b"v2" and dict(store.items(0)) == {"k": b"v2"}
    store.drop(0)


@pytest.mark.parametrize(
    ("begin", "end", "max_age", "why"),
    [
        (0, 2, 3600.0, "the changelog ends before the checkpoint: recreated"),
        (5, 9, 3600.0, "the changelog starts after the checkpoint: truncated"),
        (0, 9, 0.0, "the checkpoint is older than a tombstone is kept"),
    ],
)
def test_a_checkpoint_the_changelog_cannot_continue_means_a_full_restore(
    tmp_path: Path, begin: int, end: int, max_age: float, why: str
) -> None:
    first = _disk(tmp_path)
    _take_over(first, 0, {"a": b"1", "b": b"2", "c": b"3"})
    first.drop(0)
    again = _disk(tmp_path, max_age)
    assert again.open(0, begin, end) == begin, why
    again.restored(0)
    assert dict(again.items(0)) == {}, why
    again.drop(0)


def test_each_worker_on_a_host_takes_its_own_slot_and_gets_it_back_after(
    tmp_path: Path,
) -> None:
    one, two = StateSlot(tmp_path, slots=2), StateSlot(tmp_path, slots=2)
    assert one.acquire() == tmp_path / "slot-0"
    assert two.acquire() == tmp_path / "slot-1"
    with pytest.raises(StateSlotsTaken):
        StateSlot(tmp_path, slots=2).acquire()
    one.release()
    three = StateSlot(tmp_path, slots=2)
    assert three.acquire() == tmp_path / "slot-0"
    two.release()
    three.release()


def test_a_wiped_database_is_deleted_off_the_caller(tmp_path: Path) -> None:
    first = _disk(tmp_path)
    _take_over(first, 0, {"a": b"1"})
    first.drop(0)
    again = _disk(tmp_path)
    assert again.open(0, 0, 0) == 0  # the checkpoint (1) is past the end: wiped
    deadline = time.monotonic() + 10
    while list((tmp_path / "s").glob("0.wiped-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list((tmp_path / "s").glob("0.wiped-*")) == []
    again.restored(0)
    assert dict(again.items(0)) == {}
    again.drop(0)
