"""Everything the double remembers: apps, faults, latency, the request log, recordings, streams.

Held in memory in one object per web app so that every test gets a clean double by building a new
app (or calling ``/_control/reset``); nothing is global and nothing touches disk.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from workers.exotel_double.schema import default_settings
from workers.exotel_double.streaming import StreamRun

__all__ = ["STATE", "App", "DoubleState", "Fault", "Recording"]


@dataclass
class App:
    """One integration app: its bearer token and the settings the spec's API reads and writes."""

    customer_id: str
    app_id: str
    token: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass
class Fault:
    """An injected failure: answer ``status`` (or hang first) for matching requests.

    It is spent after ``remaining`` matches or at ``until`` (monotonic seconds), whichever comes
    first; ``None`` means no limit of that kind.
    """

    id: int
    status: int | None
    remaining: int | None
    until: float | None
    method: str | None = None
    path_prefix: str | None = None
    retry_after: str | None = None
    hang_s: float = 0.0
    hits: int = 0

    def active(self, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.until is None or now < self.until

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "remaining": self.remaining,
            "seconds_left": None if self.until is None else max(0.0, self.until - now),
            "method": self.method,
            "path_prefix": self.path_prefix,
            "retry_after": self.retry_after,
            "hang_s": self.hang_s,
            "hits": self.hits,
        }


@dataclass
class Recording:
    """A recording file served at ``/recordings/{name}``; bytes come from ``content.py``."""

    name: str
    size: int
    seed: str
    sha256: str
    content_type: str = "audio/mpeg"
    username: str | None = None
    password: str | None = None
    fail_remaining: int = 0
    fail_status: int = 503
    redirect_to: str | None = None
    # "exact": true Content-Length; "omit": chunked; "declared": send ``declared_length``.
    length_mode: str = "exact"
    declared_length: int | None = None
    fetches: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": f"/recordings/{self.name}",
            "size": self.size,
            "seed": self.seed,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "basic_auth": self.username is not None,
            "fail_remaining": self.fail_remaining,
            "fail_status": self.fail_status,
            "redirect_to": self.redirect_to,
            "length_mode": self.length_mode,
            "declared_length": self.declared_length,
            "fetches": self.fetches,
        }


@dataclass
class DoubleState:
    """The double's whole memory; handlers get it from the web app."""

    apps: dict[tuple[str, str], App] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    latency_ms: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    recordings: dict[str, Recording] = field(default_factory=dict)
    streams: dict[str, StreamRun] = field(default_factory=dict)
    frozen_now: datetime | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def now(self) -> datetime:
        """Wall-clock UTC, or the frozen instant tests set to reproduce the spec's examples."""
        return self.frozen_now if self.frozen_now is not None else datetime.now(UTC)

    def reset(self) -> None:
        self.apps.clear()
        self.faults.clear()
        self.latency_ms = 0.0
        self.requests.clear()
        self.recordings.clear()
        self.cancel_streams()
        self.streams.clear()
        self.frozen_now = None

    def cancel_streams(self) -> None:
        """Stop every stream still sending (a reset, or the double shutting down)."""
        for run in self.streams.values():
            run.cancel()

    def add_app(
        self,
        customer_id: str,
        app_id: str,
        token: str,
        settings: dict[str, Any] | None = None,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> App:
        created = created_at or self.now()
        app = App(
            customer_id=customer_id,
            app_id=app_id,
            token=token,
            settings={**default_settings(), **(settings or {})},
            created_at=created,
            updated_at=updated_at or created,
        )
        self.apps[(customer_id, app_id)] = app
        return app

    def add_fault(self, **kwargs: Any) -> Fault:
        duration_s = kwargs.pop("duration_s", None)
        until = None if duration_s is None else time.monotonic() + float(duration_s)
        fault = Fault(id=next(self._ids), until=until, **kwargs)
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first live fault matching this request, charged one use; spent faults are dropped."""
        now = time.monotonic()
        self.faults = [fault for fault in self.faults if fault.active(now)]
        for fault in self.faults:
            if fault.matches(method, path):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def log_request(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry["seq"] = len(self.requests) + 1
        self.requests.append(entry)
        return entry


# How handlers find the state on their web app.
STATE: web.AppKey[DoubleState] = web.AppKey("exotel_double_state", DoubleState)
