"""What the demo simulates: apps, calls and the webhooks each call sends (pure, no I/O).

A call is ``answered`` (popup, then a completed status callback), ``missed`` (popup, missed-call
notification, a no-answer callback) or ``recorded`` (popup, completed callback with its
recording URL, then recording_ready). The counts the demo checks at the end come from here, so
the check and the simulation cannot disagree about what "every call" means.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALL_KINDS",
    "SETTING_FOR_KIND",
    "Call",
    "DemoPlan",
    "Webhook",
    "make_plan",
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
class DemoPlan:
    run_id: str
    customer_id: str
    app_ids: tuple[str, ...]
    calls: tuple[Call, ...] = field(default=())

    def count(self, kind: str) -> int:
        return Counter(call.kind for call in self.calls)[kind]

    @property
    def webhook_count(self) -> int:
        return sum(len(call.webhooks) for call in self.calls)

    @property
    def call_sids(self) -> frozenset[str]:
        return frozenset(call.call_sid for call in self.calls)


def make_plan(
    run_id: str,
    calls: int,
    recording_base: str,
    *,
    apps: int = 2,
    customer_id: str | None = None,
    app_ids: tuple[str, ...] | None = None,
) -> DemoPlan:
    """``calls`` calls spread over the apps, cycling answered, missed, recorded.

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
    return DemoPlan(run_id, customer, app_ids, tuple(planned))


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
