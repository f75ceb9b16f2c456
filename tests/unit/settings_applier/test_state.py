"""DurableTable: writes reach the changelog before put() returns; old entries are pruned."""

from __future__ import annotations

from tests.unit.settings_applier.fakes import FakeTable, Faults
from workers.settings_applier.state import DurableTable


async def test_put_is_durable_and_prune_forgets_old_entries() -> None:
    durable: dict[bytes, bytes] = {}
    table = DurableTable(FakeTable(durable, Faults(), "t"))
    await table.put(1, "old", {"produced": True, "p": 1, "at": 100.0})
    await table.put(2, "new", {"produced": True, "p": 2, "at": 10_000.0})
    assert set(durable) == {b"old", b"new"}
    assert await table.prune(1000.0, now=10_500.0) == 1
    assert table.get("old") is None and set(durable) == {b"new"}
    assert [key for key, _ in table.items()] == ["new"]
