"""Every app's ``recording_enabled``, read by every worker from ``exotel.settings.state``.

Recordings are keyed by call_sid and the state topic by ``customer_id/app_id``, so any worker may
need any app: this reader assigns itself every partition of the compacted state topic (no
consumer group, nothing to commit), reads it from the start and follows it. ``ready`` is set once
it has caught up with the end offsets seen at start, and the agent waits for it before its first
event, so a worker that just started does not archive a recording its app has switched off.

Why not a faust GlobalTable over the state topic: with faust-streaming 0.15.3 on our Kafka such a
table left the group stuck in partition assignment (the worker never processed an event; the
enricher found the same). This module must never write to the state topic.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from topics.catalog import SETTINGS_STATE
from workers import json_codec
from workers.config import Settings

__all__ = ["RecordingSwitch", "recording_enabled"]

log = logging.getLogger(__name__)


def recording_enabled(value: bytes | None) -> bool | None:
    """From one state record (a CloudEvent): ``settings.recording_enabled``; None if unknown."""
    if value is None:
        return None
    try:
        flag = json_codec.loads(value)["data"]["settings"].get("recording_enabled")
    except (json_codec.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    return flag if isinstance(flag, bool) else None


class RecordingSwitch:
    """``(customer_id, app_id) -> recording_enabled``, kept current from the state topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.apps: dict[str, bool] = {}
        self.ready = asyncio.Event()

    def lookup(self, customer_id: str, app_id: str) -> bool | None:
        return self.apps.get(f"{customer_id}/{app_id}")

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode("utf-8", errors="replace")
        flag = recording_enabled(value)
        if flag is None:  # tombstone, unreadable, or no opinion: archive as usual
            self.apps.pop(name, None)
        else:
            self.apps[name] = flag

    async def run(self) -> None:
        spec = self._settings.topic(SETTINGS_STATE)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="exopipe-archiver-settings",
        )
        await consumer.start()
        try:
            tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if not self.ready.is_set() and all(
                    [await consumer.position(tp) >= end for tp, end in ends.items()]
                ):
                    log.info("settings state read: %d apps with recording_enabled", len(self.apps))
                    self.ready.set()
        finally:
            await consumer.stop()
