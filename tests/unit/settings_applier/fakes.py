"""In-memory stand-ins for the faust table and the Kafka outbox, with crashes on demand.

A "crash" raises :class:`Crash` at a named step; "restarting" builds new objects over only
what was durable (acknowledged changelog records, produced records), as a kill -9 would leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from topics.catalog import SETTINGS_COMMAND
from topics.events import make_event
from workers import json_codec
from workers.settings_applier.records import Outcome


class Crash(Exception):
    """The process died here."""


@dataclass
class Faults:
    at: str | None = None

    def check(self, step: str) -> None:
        if self.at == step:
            self.at = None
            raise Crash(step)


class FakeTable:
    """The bits of a faust table DurableTable uses; ``durable`` is the changelog's content."""

    def __init__(self, durable: dict[bytes, bytes], faults: Faults, name: str) -> None:
        self.durable = durable
        self.data: dict[bytes, bytes] = dict(durable)
        self._faults = faults
        self._name = name
        self.writes = 0

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    async def send_changelog(self, partition: int, key: bytes, value: Any, **_: Any) -> None:
        self.writes += 1
        self._faults.check(f"{self._name}:{self.writes}")
        if value is None:
            self.durable.pop(key, None)
        else:
            self.durable[key] = value


@dataclass
class Spec:
    name: str


@dataclass
class FakeOutbox:
    """Two topics as lists; ``send`` can die before the append or after it (ack lost)."""

    faults: Faults
    logs: dict[str, list[tuple[str, bytes]]] = field(
        default_factory=lambda: {"result": [], "state": []}
    )
    result: Spec = field(default_factory=lambda: Spec("result"))
    state: Spec = field(default_factory=lambda: Spec("state"))

    def result_partition(self, key: str) -> int:
        return 0

    async def floor(self, partition: int) -> int:
        return len(self.logs["result"])

    async def send(self, spec: Spec, key: str, value: bytes, partition: int | None) -> int:
        self.faults.check(f"send-{spec.name}:before")
        self.logs[spec.name].append((key, value))
        self.faults.check(f"send-{spec.name}:after")
        return len(self.logs[spec.name]) - 1

    async def contains(self, partition: int, floor: int, event_id: str) -> bool:
        return any(
            json_codec.loads(value)["id"] == event_id for _, value in self.logs["result"][floor:]
        )

    def results(self) -> list[dict[str, Any]]:
        return [json_codec.loads(value) for _, value in self.logs["result"]]


class FakeApplier:
    """Counts calls; answers ``applied`` with the command's settings."""

    def __init__(self, faults: Faults, calls: list[str]) -> None:
        self._faults = faults
        self.calls = calls

    async def apply(self, command: Any) -> Outcome:
        self.calls.append(command.command_id)
        self._faults.check("put")
        return Outcome(
            "applied",
            attempts=1,
            http_status=200,
            settings=dict(command.settings),
            updated_at="2024-06-15T10:30:00.000Z",
        )


def command_bytes(command_id: str, app: str = "app_1", **settings: Any) -> bytes:
    data = {
        "command_id": command_id,
        "customer_id": "cust_1",
        "app_id": app,
        "settings": settings or {"recording_enabled": True},
    }
    return make_event(SETTINGS_COMMAND, data, source="tests").to_bytes()
