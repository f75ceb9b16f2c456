"""What the pipeline produced for this demo run, read back from its output topics.

The reader is positioned at the topics' end offsets *before* the demo sends anything, so nothing
it causes can be missed and nothing from earlier runs is counted. Records are matched to this run
by call_sid (webhooks, enriched calls, recordings), stream_sid (archived streams) or command_id
(settings results), and counted once per key, so a redelivered record does not inflate a count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from topics.catalog import (
    MISSED_CALL_ENRICHED,
    RECORDING_ARCHIVED,
    RECORDING_FAILED,
    SETTINGS_RESULT,
    STREAM_ARCHIVED,
    WEBHOOK_CALL_STATUS,
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_RECORDING_READY,
    WEBHOOK_REJECTED,
    TopicSpec,
)
from topics.events import InvalidEvent, parse_event
from workers.config import Settings

__all__ = ["Observed", "Observer"]

WEBHOOK_TOPICS: tuple[TopicSpec, ...] = (
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_CALL_STATUS,
    WEBHOOK_RECORDING_READY,
)
_WATCHED: tuple[TopicSpec, ...] = (
    *WEBHOOK_TOPICS,
    WEBHOOK_REJECTED,
    MISSED_CALL_ENRICHED,
    RECORDING_ARCHIVED,
    RECORDING_FAILED,
    SETTINGS_RESULT,
    STREAM_ARCHIVED,
)


@dataclass
class Observed:
    """This run's outputs, keyed so that each thing is counted once."""

    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> data
    rejected: int = 0
    enriched: dict[str, dict[str, Any]] = field(default_factory=dict)  # call_sid -> data
    archived: dict[str, dict[str, Any]] = field(default_factory=dict)  # call_sid -> data
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # call_sid -> data
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # command_id -> data
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # stream_sid -> data


class Observer:
    """Reads the watched topics from where they ended at :meth:`start`."""

    def __init__(
        self,
        settings: Settings,
        call_sids: Iterable[str],
        run_marker: str,
        stream_sids: Iterable[str] = (),
    ) -> None:
        self._settings = settings
        self._sids = frozenset(call_sids)
        self._stream_sids = frozenset(stream_sids)
        self._marker = run_marker
        self.command_ids: set[str] = set()
        self.seen = Observed()
        self._names = {settings.topic(spec).name: spec for spec in _WATCHED}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
        )

    async def start(self) -> None:
        await self._consumer.start()
        partitions = [
            TopicPartition(name, p)
            for name, spec in self._names.items()
            for p in range(spec.partitions)
        ]
        self._consumer.assign(partitions)
        for tp, offset in (await self._consumer.end_offsets(partitions)).items():
            self._consumer.seek(tp, offset)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, wait_s: float = 0.5) -> None:
        batches = await self._consumer.getmany(timeout_ms=int(wait_s * 1000))
        for tp, records in batches.items():
            spec = self._names[tp.topic]
            for record in records:
                self._take(spec, record.key, record.value)

    def _take(self, spec: TopicSpec, key: bytes | None, value: bytes | None) -> None:
        try:
            event = parse_event(value)
        except InvalidEvent:
            return
        data = event.data if isinstance(event.data, dict) else {}
        sid = data.get("call_sid")
        if spec in WEBHOOK_TOPICS:
            if sid in self._sids:
                self.seen.webhooks[event.id] = data
        elif spec is WEBHOOK_REJECTED:
            if key is not None and self._marker in key.decode("utf-8", "replace"):
                self.seen.rejected += 1
        elif spec is MISSED_CALL_ENRICHED:
            if sid in self._sids:
                self.seen.enriched[sid] = data
        elif spec is RECORDING_ARCHIVED:
            if sid in self._sids:
                self.seen.archived[sid] = data
        elif spec is RECORDING_FAILED:
            if sid in self._sids:
                self.seen.failed[sid] = data
        elif spec is STREAM_ARCHIVED:
            if data.get("stream_sid") in self._stream_sids:
                self.seen.streams[data["stream_sid"]] = data
        elif spec is SETTINGS_RESULT and data.get("command_id") in self.command_ids:
            self.seen.results[data["command_id"]] = data
