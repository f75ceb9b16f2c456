"""The Quix Streams peer's stages give the enriched data our enricher gives for the same input,
so the bench's enricher_peer row compares frameworks doing the same job. Pure: no broker."""

from __future__ import annotations

from typing import Any

from bench.enricher.path import _event
from bench.enricher.peer import stage_one, stage_two
from topics.catalog import CALL_PARTITIONS, WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL
from workers import json_codec
from workers.config import EnricherSettings
from workers.enricher.hours import parse_hours_book
from workers.enricher.stages import Enricher, Position, Topics
from workers.enricher.stores import EnricherStores
from workers.plumbing.batch_worker import Outbox

NAMES = Topics("in", "missed", "by-caller", "enriched", "rejected")


class State:
    """Quix's per-key state, as the peer's stages use it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


class NoSettings:
    def callback_url_configured(self, customer_id: str, app_id: str) -> bool | None:
        return None


def ours(calls: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    stores = EnricherStores.declare("g", (NAMES.incoming, NAMES.missed), NAMES.by_caller)
    for store in stores.all():
        for partition in range(CALL_PARTITIONS):
            store.store.adopt(partition, {})
    config = EnricherSettings()
    enricher = Enricher(config, stores, NAMES, parse_hours_book({}), NoSettings())  # type: ignore[arg-type]
    widths = dict.fromkeys((NAMES.by_caller, NAMES.enriched, NAMES.rejected), CALL_PARTITIONS)
    found = []
    for i, (popup, missed) in enumerate(calls):
        out = Outbox(widths)
        enricher.on_popup(popup, Position(NAMES.incoming, 0, i), out)
        enricher.on_missed(missed, Position(NAMES.missed, 0, i), out)
        for (topic, partition), records in list(out.records.items()):
            for _, value in records:
                stage_out = Outbox(widths)
                enricher.on_stage(value, Position(topic, partition, i), stage_out)
                for (t, _), rs in stage_out.records.items():
                    found += [json_codec.loads(v)["data"] for _, v in rs if t == NAMES.enriched]
    return found


def peer(calls: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    config = EnricherSettings()
    by_call: dict[int, State] = {}
    by_caller: dict[str, State] = {}
    found = []
    for i, (popup, missed) in enumerate(calls):
        state = by_call.setdefault(i, State())
        stage_one(popup, True, f"0:{i}", state, config.default_region)
        for stage in stage_one(missed, False, f"0:{i}", state, config.default_region):
            event = stage_two(
                stage,
                f"0:{i}",
                by_caller.setdefault(stage["key"], State()),
                parse_hours_book({}),
                config.repeat_window_seconds,
                config.late_slack_seconds,
                config.repeat_threshold,
            )
            if event is not None:
                found.append(event["data"])
    return found


def test_the_peer_enriches_like_our_enricher() -> None:
    calls = [
        (_event(WEBHOOK_INCOMING_CALL, f"CA{i}", i), _event(WEBHOOK_MISSED_CALL, f"CA{i}", i))
        for i in range(12)
    ]
    calls.append(calls[3])  # an Exotel retry of a call: counted once by both

    def comparable(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in d.items() if k != "enriched_at"} for d in found]

    expected = comparable(ours(calls))
    assert len(expected) == 12
    assert comparable(peer(calls)) == expected
