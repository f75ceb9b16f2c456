"""The enricher's state: faust tables, each backed by a changelog topic, values as orjson bytes.

- ``popups`` (call_sid): the popup of a call, until its missed call comes or the TTL passes.
- ``handled`` (call_sid): missed-call event ids seen, with their input position, for dedupe.
- ``pending`` (call_sid): missed calls held for a late popup, until the grace period ends.
- ``callers`` (app|caller): the rolling 24 h history of one caller to one app.

Every app's settings (``exotel.settings.state``) are not a table: see ``workers.settings_state``.

The call_sid tables are updated only from the call_sid-keyed topics (6 partitions each, like
their changelogs); ``callers`` only from the by-caller topic. Every value carries ``p`` (its
partition) and ``due`` (when it expires), so expiry queues can be rebuilt after a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import faust

from topics.catalog import CALL_PARTITIONS
from workers import json_codec
from workers.faust_app import raw_topic

__all__ = ["EnricherTables", "JsonTable", "declare_tables"]


class JsonTable:
    """A faust table of dict values stored as JSON bytes (orjson, like everything else)."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table

    @property
    def name(self) -> str:
        return str(self.table.name)

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.table.get(key)
        return None if raw is None else json_codec.loads(raw)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.table[key] = json_codec.dumps(value)

    def delete(self, key: str) -> None:
        if key in self.table:
            del self.table[key]

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, raw in list(self.table.items()):
            yield key, json_codec.loads(raw)


@dataclass(frozen=True)
class EnricherTables:
    popups: JsonTable
    handled: JsonTable
    pending: JsonTable
    callers: JsonTable

    def by_name(self, name: str) -> JsonTable:
        return {t.name: t for t in (self.popups, self.handled, self.pending, self.callers)}[name]


def _table(app: faust.App, name: str, help_text: str) -> JsonTable:
    # The changelog is declared here so that keys and values are raw bytes both when written
    # and when a restarted worker reads them back (faust would otherwise decode them as JSON
    # with its own codec). Compacted, like faust's own changelogs; same width as the inputs.
    changelog = raw_topic(
        app,
        f"{app.conf.id}-{name}-changelog",
        key_type=str,
        partitions=CALL_PARTITIONS,
        compacting=True,
        acks=False,
        internal=True,
        maxsize=131_072,
        allow_empty=True,
    )
    table = app.Table(
        name,
        key_type=str,
        value_type=bytes,
        partitions=CALL_PARTITIONS,
        changelog_topic=changelog,
        help=help_text,
    )
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    return JsonTable(table)


def declare_tables(app: faust.App) -> EnricherTables:
    return EnricherTables(
        popups=_table(app, "popups", "popup per call_sid, kept for the popup TTL"),
        handled=_table(app, "handled", "missed-call event ids seen per call_sid"),
        pending=_table(app, "pending", "missed calls held for a late popup"),
        callers=_table(app, "callers", "rolling history per app|caller"),
    )
