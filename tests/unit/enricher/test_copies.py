"""A by-caller record handled again after a crash gives the same enriched record.

The core writes a batch's store changes after its outputs, so a crash in between leaves the
enriched record on Kafka and the caller's history without it: the record is handled again from
that history. Found by the kill test (a copy with another ``enriched_at``): the time is fixed
when stage one hands the call on, not when stage two runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.enricher.test_holds import NAMES, PARTITION, at, missed, new_enricher
from workers import json_codec
from workers.enricher import stages
from workers.enricher.stages import Position
from workers.plumbing.batch_worker import Outbox


class Settings:
    def callback_url_configured(self, customer_id: str, app_id: str) -> bool | None:
        return None


def enriched(out: Outbox) -> list[dict[str, Any]]:
    return [
        json_codec.loads(value)
        for (topic, _), records in out.records.items()
        if topic == NAMES.enriched
        for _, value in records
    ]


def test_a_record_handled_again_without_its_state_is_the_same_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_000_000]
    monkeypatch.setattr(stages, "now_ms", lambda: now[0])
    enricher, _ = new_enricher()
    enricher.settings_view = Settings()  # type: ignore[assignment]
    enricher.config = type(enricher.config)(grace_seconds=0)
    out = Outbox(dict.fromkeys((NAMES.by_caller, NAMES.enriched, NAMES.rejected), 6))
    enricher.on_missed(missed("c3r1", 1), at(1), out)
    [(_, hop)] = out.records[next(iter(out.records))]
    where = Position(NAMES.by_caller, PARTITION, 0)
    before = dict(enricher.stores.callers.store.items(PARTITION))

    first = Outbox(dict.fromkeys((NAMES.enriched, NAMES.rejected), 6))
    enricher.on_stage(hop, where, first)
    enricher.stores.callers.store.adopt(PARTITION, before)  # its change never reached Kafka
    now[0] += 5_000  # the restart comes later
    again = Outbox(dict.fromkeys((NAMES.enriched, NAMES.rejected), 6))
    enricher.on_stage(hop, where, again)

    assert enriched(first) and enriched(again) == enriched(first)
