"""The worker's memory: two changelog-backed faust tables, written durably.

* ``ledger`` (key: a command's de-duplication key): the final outcome of every command, written
  and *acknowledged by Kafka* before its result is produced, then marked ``produced``. This is
  what makes a redelivered command end without a second PUT or a second result (see
  :mod:`workers.settings_applier.processor` for the whole argument).
* ``apps`` (key: ``customer_id/app_id``): the settings last applied per app, which the
  reconciler compares with what Exotel reports.

Why not ``table[key] = value``: faust sends that changelog record "soon" and gives no way to wait
for it, and it needs the agent's current event to pick a partition. :meth:`DurableTable.put`
writes the local store and awaits the changelog record's acknowledgement (acks=all), on the
partition the caller names (the command's partition, which is how faust recovers the table for
whoever owns that partition next). With ``app`` given, the record goes straight to the app's
producer (:func:`~workers.settings_applier.delivery.produce`) rather than through faust's
one-at-a-time send buffer; the changelog record is the same (the in-memory store keeps no
changelog offsets, so faust's send callback has nothing to record).

This module must never hold secrets: entries come from commands, outcomes and API answers only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiokafka.errors import KafkaError

from workers import json_codec
from workers.errors import RetryableError
from workers.settings_applier.delivery import produce

__all__ = ["DurableTable"]


class DurableTable:
    """JSON objects in a faust table with raw ``bytes`` keys and values."""

    def __init__(self, table: Any, app: Any = None) -> None:
        self._table = table
        self._app = app

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._table.get(key.encode())
        return None if raw is None else json_codec.loads(raw)

    async def put(self, partition: int, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` and wait until its changelog record is on Kafka."""
        encoded_key, encoded = key.encode(), json_codec.dumps(value)
        self._table.data[encoded_key] = encoded
        await self._send(partition, encoded_key, encoded)

    async def delete(self, partition: int, key: str) -> None:
        encoded_key = key.encode()
        self._table.data.pop(encoded_key, None)
        await self._send(partition, encoded_key, None)

    async def _send(self, partition: int, key: bytes, value: bytes | None) -> None:
        if self._app is not None:
            topic = self._table.changelog_topic.get_topic_name()
            await produce(self._app, topic, key, value, partition)
            return
        try:
            await self._table.send_changelog(
                partition, key, value, key_serializer="raw", value_serializer="raw"
            )
        except KafkaError as exc:
            raise RetryableError(f"table changelog write failed: {exc!r}") from exc

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """A snapshot of the entries this worker holds (its assigned partitions)."""
        for key, raw in list(self._table.data.items()):
            if raw is not None:
                yield key.decode(), json_codec.loads(raw)

    async def prune(self, older_than_s: float, *, now: float | None = None) -> int:
        """Forget entries whose ``at`` (epoch seconds) is older than ``older_than_s``."""
        cutoff = (now if now is not None else time.time()) - older_than_s
        dropped = 0
        for key, entry in list(self.items()):
            if entry.get("at", cutoff) < cutoff and "p" in entry:
                await self.delete(int(entry["p"]), key)
                dropped += 1
        return dropped
