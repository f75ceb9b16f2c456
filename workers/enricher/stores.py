"""The enricher's state: four changelog-backed stores, values as orjson bytes of small dicts.

- ``popups`` (call_sid): the popup of a call, until its missed call comes or the TTL passes.
- ``handled`` (call_sid): missed-call event ids seen, with their input position, for dedupe.
- ``pending`` (call_sid): missed calls held for a late popup, until the grace period ends.
- ``callers`` (app|caller): the rolling 24 h history of one caller to one app.

Every app's settings (``exotel.settings.state``) are not a store: see ``workers.settings_state``.

The call_sid stores follow the call_sid-keyed topics (6 partitions each, like their
changelogs); ``callers`` follows the by-caller topic. Every value carries ``p`` (its partition)
and ``due`` (when it expires), so expiry queues can be rebuilt after a restore. The changelog
topics and their records are those of the faust tables this replaced, so state carries over.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from workers import json_codec
from workers.plumbing.changelog_store import ChangelogStore

__all__ = ["STORE_NAMES", "EnricherStores", "JsonStore", "changelog_topic"]

STORE_NAMES = ("popups", "handled", "pending", "callers")


def changelog_topic(group_id: str, name: str) -> str:
    """The changelog topic of store ``name`` (faust's name for its table's changelog)."""
    return f"{group_id}-{name}-changelog"


class JsonStore:
    """A changelog store of dict values kept as JSON bytes: a fresh copy on every ``get``."""

    def __init__(self, store: ChangelogStore) -> None:
        self.store = store

    @property
    def name(self) -> str:
        return self.store.name

    def get(self, partition: int, key: str) -> dict[str, Any] | None:
        raw = self.store.get(partition, key)
        return None if raw is None else json_codec.loads(raw)

    def set(self, partition: int, key: str, value: dict[str, Any]) -> None:
        self.store.set(partition, key, json_codec.dumps(value))

    def delete(self, partition: int, key: str) -> None:
        self.store.delete(partition, key)

    def items(self, partition: int) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, raw in self.store.items(partition):
            yield key, json_codec.loads(raw)

    def items_all(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every entry of every partition held (for reports, not the hot path)."""
        for partition in sorted(self.store.owned):
            yield from self.items(partition)


@dataclass(frozen=True)
class EnricherStores:
    popups: JsonStore
    handled: JsonStore
    pending: JsonStore
    callers: JsonStore

    def all(self) -> tuple[JsonStore, ...]:
        return (self.popups, self.handled, self.pending, self.callers)

    def by_name(self, name: str) -> JsonStore:
        return {s.name: s for s in self.all()}[name]

    @classmethod
    def declare(
        cls, group_id: str, call_topics: Iterable[str], by_caller_topic: str
    ) -> EnricherStores:
        calls = tuple(call_topics)

        def store(name: str, sources: Iterable[str]) -> JsonStore:
            return JsonStore(ChangelogStore(name, changelog_topic(group_id, name), sources))

        return cls(
            popups=store("popups", calls),
            handled=store("handled", calls),
            pending=store("pending", calls),
            callers=store("callers", (by_caller_topic,)),
        )
