"""DurableTable: writes reach the changelog before put() returns; old entries are pruned."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
from aiokafka.errors import KafkaConnectionError

from tests.unit.settings_applier.fakes import FakeTable, Faults
from workers.errors import RetryableError
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


class _Producer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []
        self._fail = fail

    async def send_and_wait(
        self, topic: str, key: bytes, value: bytes | None, *, partition: int | None, **_: Any
    ) -> Any:
        if self._fail:
            raise KafkaConnectionError("broker gone")
        self.sent.append((topic, key, value, partition))
        return SimpleNamespace(topic=topic, partition=partition, offset=len(self.sent) - 1)


class _App:
    def __init__(self, producer: _Producer) -> None:
        self.producer = producer
        self.sensors = MagicMock()

    async def maybe_start_producer(self) -> _Producer:
        return self.producer


def _faust_table(durable: dict[bytes, bytes]) -> Any:
    table = FakeTable(durable, Faults(), "t")
    table.changelog_topic = SimpleNamespace(get_topic_name=lambda: "x-settings-ledger-changelog")

    async def not_this_way(*_: Any, **__: Any) -> None:
        raise AssertionError("went through faust's send buffer")

    table.send_changelog = not_this_way  # type: ignore[method-assign]
    return table


async def test_with_an_app_changelog_records_go_straight_to_its_producer() -> None:
    producer = _Producer()
    app = _App(producer)
    table = DurableTable(_faust_table({}), app)
    await table.put(3, "cmd-1", {"produced": True, "p": 3, "at": 1.0})
    await table.delete(4, "cmd-0")
    assert producer.sent == [
        ("x-settings-ledger-changelog", b"cmd-1", b'{"produced":true,"p":3,"at":1.0}', 3),
        ("x-settings-ledger-changelog", b"cmd-0", None, 4),
    ]
    assert table.get("cmd-1") == {"produced": True, "p": 3, "at": 1.0}
    assert app.sensors.on_send_completed.call_count == 2


async def test_a_refused_changelog_write_is_retryable() -> None:
    app = _App(_Producer(fail=True))
    table = DurableTable(_faust_table({}), app)
    with pytest.raises(RetryableError):
        await table.put(0, "cmd-1", {"produced": False})
    assert app.sensors.on_send_error.call_count == 1
