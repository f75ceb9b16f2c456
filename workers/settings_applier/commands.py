"""Turning a record on ``exotel.settings.command`` into a :class:`Command`, or into every reason
it is not one.

Validation happens here, before any API call, and collects *all* problems (unknown fields, wrong
types, URLs that are not absolute http(s) — ws and wss are also allowed for ``streaming_url``, as
Exotel streams to either — an empty ``settings``), so one ``invalid`` result tells the sender
everything to fix. Bytes that are not even JSON are kept (capped) in the result so the sender can
recognise what they sent.

A URL may carry a credential (``?token=``, ``user:password@``: the ingress's own URLs do).
Records only ever show it redacted (:mod:`workers.url_credentials`), so a URL that holds the
redaction marker is refused: it was copied from a record, and Exotel would get the marker
instead of the secret.

This module never raises on bad input and never talks to the network: a broken record must never
stop the worker.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from topics.catalog import SETTINGS_COMMAND
from topics.events import InvalidEvent, parse_event
from topics.schemas import SchemaViolation, violations
from workers import json_codec
from workers.exotel_client import SETTINGS_FIELDS
from workers.url_credentials import REDACTED, carries_marker

__all__ = [
    "BOOL_FIELDS",
    "URL_FIELDS",
    "Command",
    "Rejected",
    "RawCapture",
    "capture_raw",
    "parse_command",
    "url_problem",
    "validate_data",
]

BOOL_FIELDS = frozenset({"recording_enabled", "streaming_enabled"})
URL_FIELDS = frozenset(SETTINGS_FIELDS) - BOOL_FIELDS
_SCHEMES = {"http", "https"}
_STREAM_SCHEMES = {"http", "https", "ws", "wss"}
_MAX_URL = 2048


@dataclass(frozen=True)
class Command:
    """A valid settings command: what to PUT for which app."""

    command_id: str
    customer_id: str
    app_id: str
    settings: dict[str, Any]
    requested_by: str | None = None
    dry_run: bool = False
    event_id: str | None = None

    @property
    def app_key(self) -> str:
        return f"{self.customer_id}/{self.app_id}"


@dataclass(frozen=True)
class RawCapture:
    """The first bytes of a record that was not JSON, as text when it is UTF-8, else base64."""

    text: str
    encoding: str
    size: int
    truncated: bool


@dataclass(frozen=True)
class Rejected:
    """A record that is not a valid command; identifiers are kept when they could be read."""

    errors: list[str]
    command_id: str | None = None
    customer_id: str | None = None
    app_id: str | None = None
    requested_by: str | None = None
    raw: RawCapture | None = None


def url_problem(name: str, value: str) -> str | None:
    """Why ``value`` is not an acceptable URL for setting ``name``; ``None`` when it is."""
    allowed = _STREAM_SCHEMES if name == "streaming_url" else _SCHEMES
    shown = sorted(allowed)
    if len(value) > _MAX_URL:
        return f"settings/{name}: longer than {_MAX_URL} characters"
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        return f"settings/{name}: contains whitespace or control characters"
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        return f"settings/{name}: not a valid URL ({exc})"
    if parts.scheme.lower() not in allowed:
        return f"settings/{name}: must be an absolute URL with scheme {' or '.join(shown)}"
    if not host:
        return f"settings/{name}: has no host"
    if carries_marker(value):
        return f"settings/{name}: holds {REDACTED} where a credential was: give the real URL"
    return None


def capture_raw(value: bytes | None, cap: int) -> RawCapture:
    data = value or b""
    head = data[:cap]
    try:
        text, encoding = head.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(head).decode("ascii"), "base64"
    return RawCapture(text=text, encoding=encoding, size=len(data), truncated=len(data) > cap)


def parse_command(value: bytes | None, *, raw_cap: int) -> Command | Rejected:
    """Parse and validate one record value."""
    if value is None:
        return Rejected(["record has no value"], raw=capture_raw(b"", raw_cap))
    try:
        envelope = json_codec.loads(value)
    except json_codec.JSONDecodeError as exc:
        return Rejected([f"not JSON: {exc}"], raw=capture_raw(value, raw_cap))
    data = envelope.get("data") if isinstance(envelope, dict) else None
    # A bare command without its envelope still names itself: keep its ids for the result.
    ids = _identifiers(data if isinstance(data, dict) else envelope)
    try:
        event = parse_event(value)
    except InvalidEvent as exc:
        return Rejected([f"not a CloudEvent: {exc}"], **ids)
    errors: list[str] = []
    if event.type != SETTINGS_COMMAND.event_type:
        errors.append(f"type {event.type!r} is not {SETTINGS_COMMAND.event_type!r}")
    errors += _data_problems(data)
    if errors:
        return Rejected(errors, **ids)
    data = cast(dict[str, Any], data)  # _data_problems reported anything but an object
    return Command(
        command_id=data["command_id"],
        customer_id=data["customer_id"],
        app_id=data["app_id"],
        settings=dict(data["settings"]),
        requested_by=data.get("requested_by"),
        dry_run=bool(data.get("dry_run", False)),
        event_id=event.id,
    )


def validate_data(data: Any) -> list[str]:
    """Every reason ``data`` is not a valid command (schema and URL rules); empty when valid."""
    return _data_problems(data)


def _data_problems(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["data: must be an object with command_id, customer_id, app_id and settings"]
    try:
        errors = violations(SETTINGS_COMMAND, data)
    except SchemaViolation as exc:  # pragma: no cover - violations() reports, never raises
        errors = exc.errors
    settings = data.get("settings")
    if isinstance(settings, dict):
        for name in sorted(URL_FIELDS & set(settings)):
            value = settings[name]
            if isinstance(value, str):
                problem = url_problem(name, value)
                if problem:
                    errors.append(problem)
    return errors


def _identifiers(data: Any) -> dict[str, Any]:
    """command_id, customer_id, app_id and requested_by when present as strings."""
    if not isinstance(data, dict):
        return {}
    names = ("command_id", "customer_id", "app_id", "requested_by")
    return {name: data[name] for name in names if isinstance(data.get(name), str) and data[name]}
