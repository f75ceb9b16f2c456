"""Exactly one result per command whatever step a crash interrupts (the processor's argument)."""

from __future__ import annotations

import pytest

from tests.unit.settings_applier.fakes import (
    Crash,
    FakeApplier,
    FakeOutbox,
    FakeTable,
    Faults,
    command_bytes,
)
from workers.retry import RetryPolicy
from workers.settings_applier.processor import CommandProcessor
from workers.settings_applier.records import result_id
from workers.settings_applier.state import DurableTable

NO_RETRY = RetryPolicy(max_attempts=1)


class World:
    """Durable state that survives a crash, and a fresh processor per "process"."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.ledger: dict[bytes, bytes] = {}
        self.apps: dict[bytes, bytes] = {}
        self.outbox = FakeOutbox(self.faults)
        self.calls: list[str] = []

    def process(self) -> CommandProcessor:
        return CommandProcessor(
            ledger=DurableTable(FakeTable(self.ledger, self.faults, "ledger")),
            apps=DurableTable(FakeTable(self.apps, self.faults, "apps")),
            applier=FakeApplier(self.faults, self.calls),  # type: ignore[arg-type]
            outbox=self.outbox,  # type: ignore[arg-type]
            kafka_policy=NO_RETRY,
            raw_cap=64,
        )


# Every step at which a process can die, in the order they happen.
CRASH_POINTS = [
    "put",  # during the PUT (it may or may not have reached Exotel)
    "apps:1",  # the apps-table write is not acknowledged
    "ledger:1",  # the outcome's ledger write is not acknowledged
    "send-state:before",
    "send-state:after",  # state record written, acknowledgement lost
    "send-result:before",
    "send-result:after",  # result written, acknowledgement lost
    "ledger:2",  # the "produced" marker is not acknowledged
]


@pytest.mark.parametrize("point", CRASH_POINTS)
async def test_a_crash_at_any_step_still_gives_exactly_one_result(point: str) -> None:
    world = World()
    value = command_bytes("cmd-1", recording_url="https://h.example.com/r")
    first = world.process()
    item = first.parse(b"cust_1/app_1", value, 0, 7)
    world.faults.at = point
    with pytest.raises(Crash):
        await first.handle(item)

    # Restart: the command is redelivered (its offset was never committed), then re-sent again.
    second = world.process()
    await second.handle(second.parse(b"cust_1/app_1", value, 0, 7))
    third = world.process()
    assert await third.handle(third.parse(b"cust_1/app_1", value, 0, 7)) == "duplicate"

    results = world.outbox.results()
    assert [r["data"]["command_id"] for r in results] == ["cmd-1"]
    assert results[0]["id"] == result_id("cmd-1")
    assert results[0]["data"]["outcome"] == "applied"
    # Once the outcome is recorded (any point after "ledger:1"), the PUT is never repeated.
    recorded = CRASH_POINTS.index(point) > CRASH_POINTS.index("ledger:1")
    assert len(world.calls) == (1 if recorded else 2)
    # The applied state reached its topic (a copy after a crash is harmless: compacted).
    assert 1 <= len(world.outbox.logs["state"]) <= 2
    # And the reconciler knows what was applied.
    applied = DurableTable(FakeTable(world.apps, Faults(), "x")).get("cust_1/app_1")
    assert applied is not None and applied["command_id"] == "cmd-1"


async def test_a_re_sent_result_is_byte_identical_to_the_recorded_one() -> None:
    world = World()
    value = command_bytes("cmd-2")
    first = world.process()
    world.faults.at = "send-result:before"
    with pytest.raises(Crash):
        await first.handle(first.parse(b"k", value, 0, 1))
    recorded = DurableTable(FakeTable(world.ledger, Faults(), "x")).get("cmd-2")
    assert recorded is not None and recorded["produced"] is False
    second = world.process()
    assert await second.handle(second.parse(b"k", value, 0, 1)) == "redelivered"
    assert world.outbox.results() == [recorded["result"]]


async def test_unreadable_records_are_deduplicated_by_their_offset() -> None:
    world = World()
    for _ in range(2):
        processor = world.process()
        await processor.handle(processor.parse(b"cust_1/app_1", b"\xff\xfe garbage", 3, 42))
    (result,) = world.outbox.results()
    assert result["data"]["outcome"] == "invalid"
    assert result["data"]["command_id"] is None
    assert result["data"]["raw"]["encoding"] == "base64"
    assert world.calls == []


async def test_the_ledger_shrinks_to_a_marker_once_produced() -> None:
    world = World()
    processor = world.process()
    await processor.handle(processor.parse(b"k", command_bytes("cmd-3"), 0, 1))
    entry = DurableTable(FakeTable(world.ledger, Faults(), "x")).get("cmd-3")
    assert entry is not None and set(entry) == {"produced", "p", "at"}
