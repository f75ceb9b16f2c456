"""Per-app settings from settings-state records: tombstones, garbage and partial settings."""

from __future__ import annotations

from typing import Any

from topics.catalog import SETTINGS_STATE
from topics.events import make_event
from workers.config import Settings
from workers.settings_state import AppSettings, SettingsState, read_app_settings


def state(**settings: Any) -> bytes:
    data = {
        "customer_id": "acme", "app_id": "a1", "kind": "applied",
        "settings": settings, "observed_at": "2025-03-01T09:00:00.000Z",
    }  # fmt: skip
    return make_event(SETTINGS_STATE, data, source="test").to_bytes()


def new_state() -> SettingsState:
    return SettingsState(Settings(), client_id="test")


def test_reads_the_recording_flag_and_nothing_else() -> None:
    assert read_app_settings(state(recording_enabled=False)) == AppSettings(False, False)
    assert read_app_settings(state(recording_enabled=True)) == AppSettings(False, True)
    assert read_app_settings(state(recording_enabled=None)) == AppSettings(False, None)
    off_schema = b'{"data": {"settings": {"recording_enabled": "yes"}}}'
    assert read_app_settings(off_schema) == AppSettings(False, None)
    assert read_app_settings(b"not json") is None
    assert read_app_settings(b'{"data": {"settings": []}}') is None
    assert read_app_settings(None) is None


def test_callback_url_counts_only_when_set_to_something() -> None:
    assert read_app_settings(state(callback_url="https://cb.example/x")) == AppSettings(True, None)
    assert read_app_settings(state(callback_url="")) == AppSettings(False, None)
    assert read_app_settings(state(callback_url=None)) == AppSettings(False, None)


def test_latest_record_wins_and_a_tombstone_forgets() -> None:
    apps = new_state()
    apps.apply(b"acme/a1", state(recording_enabled=False, callback_url="https://cb.example/x"))
    assert apps.recording_enabled("acme", "a1") is False
    assert apps.callback_url_configured("acme", "a1") is True
    apps.apply(b"acme/a1", state(recording_enabled=True))
    assert apps.recording_enabled("acme", "a1") is True
    assert apps.callback_url_configured("acme", "a1") is False
    apps.apply(b"acme/a1", None)
    assert apps.recording_enabled("acme", "a1") is None
    assert apps.callback_url_configured("acme", "a1") is None
    assert apps.lookup("acme", "other") is None


def test_an_unreadable_record_makes_the_app_unknown_and_keyless_records_are_ignored() -> None:
    apps = new_state()
    apps.apply(b"acme/a1", state(callback_url="https://cb.example/x"))
    apps.apply(None, state(callback_url=""))
    assert apps.callback_url_configured("acme", "a1") is True
    apps.apply(b"acme/a1", b"garbage")
    assert apps.callback_url_configured("acme", "a1") is None
    assert apps.apps == {}
