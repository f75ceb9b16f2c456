"""recording_enabled from settings-state records, tombstones and garbage included."""

from __future__ import annotations

from topics.catalog import SETTINGS_STATE
from topics.events import make_event
from workers.archiver.settings_state import RecordingSwitch, recording_enabled
from workers.config import Settings


def state(enabled: bool | None) -> bytes:
    data = {
        "customer_id": "acme", "app_id": "a1", "kind": "applied",
        "settings": {"recording_enabled": enabled}, "observed_at": "2025-03-01T09:00:00.000Z",
    }  # fmt: skip
    return make_event(SETTINGS_STATE, data, source="test").to_bytes()


def test_reads_the_flag_and_nothing_else() -> None:
    assert recording_enabled(state(False)) is False
    assert recording_enabled(state(True)) is True
    assert recording_enabled(state(None)) is None
    assert recording_enabled(b"not json") is None
    assert recording_enabled(None) is None


def test_latest_record_wins_and_a_tombstone_forgets() -> None:
    switch = RecordingSwitch(Settings())
    switch.apply(b"acme/a1", state(False))
    assert switch.lookup("acme", "a1") is False
    switch.apply(b"acme/a1", state(True))
    assert switch.lookup("acme", "a1") is True
    switch.apply(b"acme/a1", None)
    assert switch.lookup("acme", "a1") is None
    assert switch.lookup("acme", "other") is None
