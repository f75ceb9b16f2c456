"""What the demo simulates: apps, calls and the webhooks each call sends (pure, no I/O).

A call is ``answered`` (popup, then a completed status callback), ``missed`` (popup, missed-call
notification, a no-answer callback) or ``recorded`` (popup, completed callback with its
recording URL, then recording_ready). A streamed call is the double's live audio to an app's
``streaming_url``, archived as one WAV. The counts the demo checks at the end come from here, so
the check and the simulation cannot disagree about what "every call" means.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "CALL_KINDS",
    "SETTING_FOR_KIND",
    "Call",
    "DemoPlan",
    "StreamedCall",
    "Webhook",
    "make_plan",
    "stream_url",
]

CALL_KINDS: tuple[str, ...] = ("answered", "missed", "recorded")
# Webhook kind (the double's payload builder) -> the app setting naming where it goes.
SETTING_FOR_KIND: dict[str, str] = {
    "incoming_call": "popup_url",
    "missed_call": "missed_call_url",
    "call_status": "callback_url",
    "recording_ready": "recording_url",
}
# Setting -> the ingress route kind (the last path segment of the webhook URL).
INGRESS_KIND: dict[str, str] = {
    "popup_url": "popup",
    "missed_call_url": "missed-call",
    "callback_url": "callback",
    "recording_url": "recording",
}
RECORDING_BYTES = 48 * 1024
# Seconds of audio in each streamed call, sent at real-time pace.
STREAM_SECONDS = 4.0


@dataclass(frozen=True)
class Webhook:
    """One webhook of a call: the double's payload kind and the fields laid over its defaults."""

    kind: str
    fields: dict[str, Any]

    @property
    def setting(self) -> str:
        return SETTING_FOR_KIND[self.kind]


@dataclass(frozen=True)
class Call:
    call_sid: str
    app_id: str
    kind: str
    caller: str
    recording_name: str | None = None
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True)
class StreamedCall:
    """A call whose audio the double streams to its app's ``streaming_url``."""

    stream_sid: str
    call_sid: str
    app_id: str
    duration_s: float = STREAM_SECONDS


@dataclass(frozen=True)
class DemoPlan:
    run_id: str
    customer_id: str
    app_ids: tuple[str, ...]
    calls: tuple[Call, ...] = field(default=())
    streams: tuple[StreamedCall, ...] = field(default=())

    def count(self, kind: str) -> int:
        return Counter(call.kind for call in self.calls)[kind]

    @property
    def webhook_count(self) -> int:
        return sum(len(call.webhooks) for call in self.calls)

    @property
    def call_sids(self) -> frozenset[str]:
        return frozenset(call.call_sid for call in self.calls)

    @property
    def stream_sids(self) -> frozenset[str]:
        return frozenset(stream.stream_sid for stream in self.streams)

    @property
    def streaming_apps(self) -> frozenset[str]:
        return frozenset(stream.app_id for stream in self.streams)


def make_plan(
    run_id: str,
    calls: int,
    recording_base: str,
    *,
    apps: int = 2,
    customer_id: str | None = None,
    app_ids: tuple[str, ...] | None = None,
    streams: int = 0,
) -> DemoPlan:
    """``calls`` calls spread over the apps, cycling answered, missed, recorded; ``streams``
    streamed calls spread over them the same way.

    ``recording_base`` is where the archiver finds the double's recording files
    (``.../recordings``). Without ``customer_id``/``app_ids`` the run gets its own customer and
    ``apps`` apps, so runs never share state.
    """
    customer = customer_id or f"demo-{run_id}"
    if app_ids is None:
        app_ids = tuple(f"app-{i + 1}" for i in range(apps))
    apps = len(app_ids)
    planned = []
    for i in range(calls):
        kind = CALL_KINDS[i % len(CALL_KINDS)]
        sid = f"call-{run_id}-{i + 1:04d}"
        # Every fourth caller repeats an earlier one, so repeat counts show up in the summary.
        caller = f"+9198{(i % 4 if i >= 4 else i) + 10000000:08d}"
        planned.append(_call(sid, app_ids[i % apps], kind, caller, recording_base))
    streamed = tuple(
        StreamedCall(
            f"stream-{run_id}-{i + 1:02d}", f"call-{run_id}-s{i + 1:02d}", app_ids[i % apps]
        )
        for i in range(streams)
    )
    return DemoPlan(run_id, customer, app_ids, tuple(planned), streamed)


def stream_url(ingress_url: str, customer_id: str, app_id: str, secret: str) -> str:
    """The app's ``streaming_url``: the ingress's stream route, the tenant secret as the URL's
    password (Exotel sends it as a Basic header), ws for http and wss for https."""
    parts = urlsplit(ingress_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    userinfo = f"{quote(customer_id, safe='')}:{quote(secret, safe='')}"
    path = f"{parts.path.rstrip('/')}/v1/{customer_id}/{app_id}/stream"
    return urlunsplit((scheme, f"{userinfo}@{parts.netloc}", path, "", ""))


def _call(sid: str, app_id: str, kind: str, caller: str, recording_base: str) -> Call:
    popup = Webhook("incoming_call", {"call_sid": sid, "from": caller})
    if kind == "answered":
        done = Webhook("call_status", {"CallSid": sid, "Status": "completed"})
        return Call(sid, app_id, kind, caller, webhooks=(popup, done))
    if kind == "missed":
        missed = Webhook("missed_call", {"call_sid": sid, "from": caller})
        status = Webhook("call_status", {"CallSid": sid, "Status": "no-answer"})
        return Call(sid, app_id, kind, caller, webhooks=(popup, missed, status))
    name = f"{sid}.mp3"
    url = f"{recording_base.rstrip('/')}/{name}"
    done = Webhook("call_status", {"CallSid": sid, "Status": "completed", "RecordingUrl": url})
    ready = Webhook("recording_ready", {"call_sid": sid, "recording_url": url, "duration": 42})
    return Call(sid, app_id, kind, caller, recording_name=name, webhooks=(popup, done, ready))
