"""Validation of commands: every reason at once, nothing raised, raw bytes kept when not JSON."""

from __future__ import annotations

import pytest

from tests.unit.settings_applier.fakes import command_bytes
from topics.catalog import SETTINGS_COMMAND
from topics.events import make_event
from workers import json_codec
from workers.settings_applier.commands import Command, Rejected, parse_command, url_problem


def envelope(data: object, **attrs: object) -> bytes:
    event = make_event(
        SETTINGS_COMMAND,
        {
            "command_id": "x",
            "customer_id": "c",
            "app_id": "a",
            "settings": {"popup_url": "https://e.x"},
        },
        source="tests",
    ).to_dict()
    event["data"] = data
    event.update(attrs)
    return json_codec.dumps(event)


def test_a_valid_command() -> None:
    command = parse_command(command_bytes("c-1", streaming_url="wss://s.example.com/a"), raw_cap=10)
    assert isinstance(command, Command)
    assert command.settings == {"streaming_url": "wss://s.example.com/a"}
    assert command.app_key == "cust_1/app_1" and command.dry_run is False


def test_every_reason_is_reported_together() -> None:
    data = {
        "command_id": "c-2",
        "customer_id": "cust",
        "app_id": "app",
        "settings": {
            "popup_url": "/relative",
            "recording_enabled": "true",
            "colour": "red",
            "missed_call_url": "ftp://files.example.com/x",
        },
        "surprise": 1,
    }
    rejected = parse_command(envelope(data), raw_cap=10)
    assert isinstance(rejected, Rejected)
    text = "\n".join(rejected.errors)
    for needle in ("surprise", "colour", "recording_enabled", "popup_url", "missed_call_url"):
        assert needle in text, needle
    assert rejected.command_id == "c-2" and rejected.customer_id == "cust"


def test_empty_settings_is_invalid() -> None:
    data = {"command_id": "c", "customer_id": "cu", "app_id": "ap", "settings": {}}
    rejected = parse_command(envelope(data), raw_cap=10)
    assert isinstance(rejected, Rejected) and "settings" in rejected.errors[0]


def test_missing_fields_and_a_slash_in_an_id() -> None:
    rejected = parse_command(
        envelope({"customer_id": "a/b", "settings": {"popup_url": 3}}), raw_cap=10
    )
    assert isinstance(rejected, Rejected)
    text = " ".join(rejected.errors)
    assert "command_id" in text and "app_id" in text and "customer_id" in text
    assert "popup_url" in text


@pytest.mark.parametrize(
    ("name", "url", "ok"),
    [
        ("popup_url", "https://h.example.com/p?q=1", True),
        ("popup_url", "http://h.example.com:8080/p", True),
        ("popup_url", "wss://h.example.com/p", False),
        ("streaming_url", "wss://h.example.com/s", True),
        ("streaming_url", "ws://h.example.com/s", True),  # Exotel streams to ws:// too
        ("streaming_url", "ftp://h.example.com/s", False),
        ("callback_url", "https:///nohost", False),
        ("callback_url", "h.example.com/p", False),
        # Credentials are allowed (the ingress takes its secret so); records show them redacted.
        ("callback_url", "https://user:pw@h.example.com/", True),
        ("callback_url", "https://h.example.com/cb?token=s3cret", True),
        # A redacted URL copied from a record would give Exotel the marker, not the secret.
        ("callback_url", "https://user:%5Bredacted%5D@h.example.com/", False),
        ("callback_url", "https://h.example.com/cb?token=%5Bredacted%5D", False),
        ("callback_url", "https://h.example.com/cb?token=[redacted]", False),
        ("callback_url", "https://h.example.com/a b", False),
        ("callback_url", "https://h.example.com:99999/", False),
        ("callback_url", "javascript:alert(1)", False),
    ],
)
def test_urls(name: str, url: str, ok: bool) -> None:
    assert (url_problem(name, url) is None) is ok


def test_not_json_keeps_capped_raw_bytes() -> None:
    rejected = parse_command(b"hello, not json" * 10, raw_cap=20)
    assert isinstance(rejected, Rejected) and rejected.raw is not None
    assert rejected.raw.text == "hello, not jsonhello"
    assert (rejected.raw.encoding, rejected.raw.size, rejected.raw.truncated) == (
        "utf-8",
        150,
        True,
    )
    binary = parse_command(b"\xff\xfe\x00", raw_cap=20)
    assert isinstance(binary, Rejected) and binary.raw is not None
    assert binary.raw.encoding == "base64" and binary.raw.text == "//4A"


def test_json_but_not_a_cloudevent_or_the_wrong_type() -> None:
    plain = parse_command(json_codec.dumps({"command_id": "c-9"}), raw_cap=10)
    assert isinstance(plain, Rejected) and plain.command_id == "c-9"
    assert "CloudEvent" in plain.errors[0]
    data = {
        "command_id": "c",
        "customer_id": "cu",
        "app_id": "ap",
        "settings": {"popup_url": "https://e.x"},
    }
    wrong = parse_command(envelope(data, type="com.example.other"), raw_cap=10)
    assert isinstance(wrong, Rejected) and "type" in wrong.errors[0]
    assert isinstance(parse_command(None, raw_cap=10), Rejected)
