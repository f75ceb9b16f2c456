"""Every app's settings state, read by every worker: all partitions of ``exotel.settings.state``.

The enricher's repeat counts are partitioned by caller, so any worker may need any app's
settings. This reader assigns itself every partition of the compacted state topic (no consumer
group: nothing to commit, nothing to share), reads it from the start and follows it. ``ready``
is set once it has caught up with the end offsets seen at start, so a freshly started worker
does not answer "unknown app" for an app whose state is already on the topic.

Why not a faust GlobalTable over the state topic: with faust-streaming 0.15.3 against our
Kafka, a GlobalTable whose changelog is this topic left the group stuck in partition assignment
(the worker never became ready); a plain reader is small and does the one thing needed.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from topics.catalog import SETTINGS_STATE
from workers import json_codec
from workers.config import Settings

__all__ = ["SettingsView", "callback_configured"]

log = logging.getLogger(__name__)


def callback_configured(value: bytes | None) -> bool | None:
    """From one state record: is a callback_url set? None when the record is unreadable."""
    if value is None:
        return None
    try:
        settings = json_codec.loads(value)["data"]["settings"]
        return bool(settings.get("callback_url"))
    except (json_codec.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


class SettingsView:
    """``customer_id/app_id`` -> callback_url configured, kept current from the state topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.topic(SETTINGS_STATE).name
        self.apps: dict[str, bool | None] = {}
        self.ready = asyncio.Event()

    def callback_configured(self, customer_id: str, app_id: str) -> bool | None:
        return self.apps.get(f"{customer_id}/{app_id}")

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode("utf-8", errors="replace")
        if value is None:  # a tombstone: the app's state was removed
            self.apps.pop(name, None)
            return
        configured = callback_configured(value)
        if configured is None:
            log.warning("unreadable settings state for %s: treated as unknown", name)
            self.apps.pop(name, None)
        else:
            self.apps[name] = configured

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="exopipe-enricher-settings",
        )
        await consumer.start()
        try:
            # The declared count: the worker created the topic from the catalog before starting.
            spec = self._settings.topic(SETTINGS_STATE)
            tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if not self.ready.is_set() and await self._caught_up(consumer, ends):
                    self.ready.set()
        except KafkaError:
            log.exception("settings state reader failed")
            raise
        finally:
            await consumer.stop()

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True
