"""Every app's settings state, read by every worker from all of ``exotel.settings.state``.

Workers need any app's settings, whatever they are partitioned by (the enricher by caller, the
archiver by call_sid), while the state topic is keyed by ``customer_id/app_id``. So this reader
assigns itself every partition of the compacted state topic (no consumer group: nothing to
commit, nothing to share), reads it from the start and follows it. ``ready`` is set once it has
caught up with the end offsets seen at start; agents wait for it before their first event, so a
freshly started worker does not answer "unknown app" for an app whose state is already there.

Only what the workers ask is kept per app (:class:`AppSettings`), not whole records.

Why not a faust GlobalTable over the state topic: with faust-streaming 0.15.3 against our Kafka,
a GlobalTable whose changelog is this topic left the group stuck in partition assignment (the
worker never became ready); a plain reader is small and does the one thing needed.
This module must never write to the state topic.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from topics.catalog import SETTINGS_STATE
from workers import json_codec
from workers.config import Settings
from workers.kafka import all_partitions, new_reader

__all__ = ["AppSettings", "SettingsState", "read_app_settings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppSettings:
    """What workers use of one app's applied settings."""

    callback_url_configured: bool
    # None when the state says nothing usable: the archiver then archives as usual.
    recording_enabled: bool | None


def read_app_settings(value: bytes | None) -> AppSettings | None:
    """From one state record (a CloudEvent); None for a tombstone or an unreadable record."""
    if value is None:
        return None
    try:
        settings = json_codec.loads(value)["data"]["settings"]
        callback_url = settings.get("callback_url")
        flag = settings.get("recording_enabled")
    except (json_codec.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    return AppSettings(
        callback_url_configured=bool(callback_url),
        recording_enabled=flag if isinstance(flag, bool) else None,
    )


class SettingsState:
    """``customer_id/app_id`` -> :class:`AppSettings`, kept current from the state topic."""

    def __init__(self, settings: Settings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self.apps: dict[str, AppSettings] = {}
        self.ready = asyncio.Event()

    def lookup(self, customer_id: str, app_id: str) -> AppSettings | None:
        return self.apps.get(f"{customer_id}/{app_id}")

    def callback_url_configured(self, customer_id: str, app_id: str) -> bool | None:
        """None when the app is unknown."""
        app = self.lookup(customer_id, app_id)
        return None if app is None else app.callback_url_configured

    def recording_enabled(self, customer_id: str, app_id: str) -> bool | None:
        """None when the app is unknown or its state has no opinion."""
        app = self.lookup(customer_id, app_id)
        return None if app is None else app.recording_enabled

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode("utf-8", errors="replace")
        app = read_app_settings(value)
        if app is None:  # a tombstone (the app's state was removed) or garbage: unknown
            if value is not None:
                log.warning("unreadable settings state for %s: treated as unknown", name)
            self.apps.pop(name, None)
        else:
            self.apps[name] = app

    async def run(self) -> None:
        consumer = new_reader(self._settings, client_id=self._client_id)
        await consumer.start()
        try:
            # The declared count: the worker created the topic from the catalog before starting.
            tps = all_partitions(self._settings.topic(SETTINGS_STATE))
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if not self.ready.is_set() and await self._caught_up(consumer, ends):
                    log.info("settings state read: %d apps", len(self.apps))
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
