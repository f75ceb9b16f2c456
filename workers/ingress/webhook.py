"""The webhook handler: check, read, normalize, deliver, answer; refuse with a reason otherwise.

Order of checks: sender allowlist (403), secret (401), rate limit (429), kind (404), body size
(413) and body deadline (408), shape and schema (400). 403, 401 and 429 leave no record (a
counter only: a stranger must not be able to fill a topic); every other refusal also goes to
``exotel.webhook.rejected``. A 2xx means the record is acknowledged by Kafka or fsynced to the
spool (see :mod:`sink`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from aiohttp import web

from topics.catalog import WEBHOOK_REJECTED, TopicSpec
from topics.events import CloudEvent, make_event
from topics.schemas import SchemaViolation
from workers import json_codec
from workers.config import Settings
from workers.ingress.auth import SenderAllowlist, authenticate, candidate_secrets
from workers.ingress.limits import BodySlow, BodyTooLarge, RateLimiter, read_body
from workers.ingress.metrics import IngressMetrics
from workers.ingress.normalize import KINDS, InvalidWebhook, normalize
from workers.ingress.payload import parse_fields
from workers.ingress.reject import rejected_data, rejected_id
from workers.ingress.sink import Sink, SpoolFull
from workers.secret_store import SecretStore

__all__ = ["Ingress", "Refusal", "admit", "handle_webhook", "json_answer", "throttle"]

log = logging.getLogger(__name__)
_REQUIRED = re.compile(r"'([^']+)' is a required property")
_MAX_ERROR = 300


@dataclass
class Ingress:
    """Everything a request needs, built once per process."""

    settings: Settings
    secrets: SecretStore
    sink: Sink
    metrics: IngressMetrics
    limiter: RateLimiter
    allowlist: SenderAllowlist
    zone: tzinfo
    _topics: dict[str, TopicSpec] = field(default_factory=dict, repr=False)

    def topic(self, spec: TopicSpec) -> TopicSpec:
        """``settings.topic(spec)``, built once per catalog topic rather than once per request."""
        named = self._topics.get(spec.name)
        if named is None:
            named = self._topics[spec.name] = self.settings.topic(spec)
        return named


def json_answer(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=json_codec.dumps(body), content_type="application/json", headers=headers
    )


def admit(
    request: web.Request, ing: Ingress, kind: str, customer_id: str, app_id: str
) -> web.Response | None:
    """The sender allowlist (403) and the tenant's secret (401): the refusal, or None to go on.

    Shared by webhooks and streams; neither refusal leaves a record (a stranger must not be able
    to fill a topic), only a counter.
    """
    if not ing.allowlist.allows(request.remote):
        ing.metrics.rejected.labels("forbidden_sender").inc()
        ing.metrics.answered(kind, 403)
        return json_answer(403, {"error": "forbidden_sender"})
    offered = candidate_secrets(request.query, request.headers.get("Authorization"))
    if not authenticate(ing.secrets, customer_id, app_id, offered):
        ing.metrics.rejected.labels("unauthorized").inc()
        ing.metrics.answered(kind, 401)
        headers = {"WWW-Authenticate": 'Basic realm="exopipe"'}
        return json_answer(401, {"error": "unauthorized"}, headers)
    return None


def throttle(ing: Ingress, kind: str, customer_id: str) -> web.Response | None:
    """The tenant's rate limit, one bucket for its webhooks and stream handshakes: 429 with
    Retry-After (a counter only), or None to go on. Runs after :func:`admit`."""
    wait = ing.limiter.acquire(customer_id)
    if wait is None:
        return None
    ing.metrics.rejected.labels("rate_limited").inc()
    ing.metrics.answered(kind, 429)
    retry_after = RateLimiter.retry_after_header(wait)
    return json_answer(429, {"error": "rate_limited"}, {"Retry-After": retry_after})


async def handle_webhook(request: web.Request, ing: Ingress) -> web.Response:
    kind = request.match_info["kind"]
    customer_id = request.match_info["customer_id"]
    app_id = request.match_info["app_id"]
    received_at = datetime.now(UTC)

    def count(status: int) -> None:
        ing.metrics.answered(kind, status)

    refused = admit(request, ing, kind, customer_id, app_id)
    if refused is None:
        refused = throttle(ing, kind, customer_id)
    if refused is not None:
        return refused

    refuse = Refusal(request, ing, kind, customer_id, app_id, received_at)
    if kind not in KINDS:
        return await refuse(
            404, "unknown_kind", "kind", [f"kind: {kind!r} is not one of {sorted(KINDS)}"]
        )
    limits = ing.settings.ingress
    try:
        body = await read_body(request, limits.body_limit_bytes, limits.body_timeout_s)
    except BodyTooLarge as exc:
        error = f"body: larger than {exc.limit} bytes"
        return await refuse(413, "body_too_large", "body", [error], body=exc.head, size=exc.size)
    except BodySlow as exc:
        error = f"body: not received within {exc.timeout_s} s"
        return await refuse(408, "body_timeout", "body", [error], body=exc.head, size=exc.size)
    refuse.body = body
    try:
        fields, shape = parse_fields(
            request.method, request.headers.get("Content-Type", ""), body, request.query
        )
        norm = normalize(
            kind,
            fields,
            shape,
            customer_id=customer_id,
            app_id=app_id,
            received_at=received_at,
            local_zone=ing.zone,
        )
        refuse.call_sid = norm.key or None
        spec = ing.topic(norm.spec)
        event = make_event(
            spec,
            norm.data,
            source=f"/ingress/{customer_id}/{app_id}/{kind}",
            event_id=norm.event_id,
            time=norm.time,
            customer_id=customer_id,
            app_id=app_id,
        )
    except InvalidWebhook as exc:
        return await refuse(400, "invalid_payload", exc.field, exc.errors)
    except SchemaViolation as exc:
        errors = [_readable(e)[:_MAX_ERROR] for e in exc.errors]
        return await refuse(400, "schema_violation", _field_of(errors[0]), errors)

    try:
        outcome = await ing.sink.deliver(spec.name, norm.key, event.to_bytes())
    except SpoolFull:
        ing.metrics.rejected.labels("spool_full").inc()
        count(503)
        return json_answer(503, {"error": "spool_full"}, {"Retry-After": "30"})
    count(200)
    return json_answer(200, {"status": "accepted", "id": event.id, "delivery": outcome})


def _readable(error: str) -> str:
    # Normalized fields are null when the webhook lacks them: say so instead of "None is not ...".
    path, sep, message = error.partition(": ")
    if sep and message.startswith("None is not of type"):
        return f"{path}: is required"
    return error


def _field_of(error: str) -> str:
    """The field a schema error is about: its path, or the missing property's name."""
    path, _, message = error.partition(": ")
    missing = _REQUIRED.search(message)
    if missing:
        return missing.group(1)
    return path.split("/")[0] if path != "(root)" else "body"


class Refusal:
    """Answers a refusal and records it on ``exotel.webhook.rejected`` (durably, via the sink).

    :meth:`build` and :meth:`keep` alone record a refused input that gets no HTTP answer of its
    own (a stream's frame); :meth:`keep` raises :class:`SpoolFull` when the record cannot be kept.
    """

    def __init__(
        self,
        request: web.Request,
        ing: Ingress,
        kind: str,
        customer_id: str,
        app_id: str,
        received_at: datetime,
    ) -> None:
        self.request = request
        self.ing = ing
        self.kind = kind
        self.customer_id = customer_id
        self.app_id = app_id
        self.received_at = received_at
        self.body = b""
        self.call_sid: str | None = None

    def build(
        self,
        status: int | None,
        reason: str,
        errors: list[str],
        *,
        body: bytes,
        size: int,
        received_at: datetime | None = None,
        event_id: str | None = None,
        stream: dict[str, Any] | None = None,
    ) -> CloudEvent:
        """The rejected record, scrubbed of secrets (default id: one per distinct request).

        ``stream`` places a refused stream frame: its stream_sid, connection_id and frame_index.
        """
        ing, request = self.ing, self.request
        received_at = received_at or self.received_at
        secrets = [s.reveal() for s in ing.secrets.tenant_secrets(self.customer_id, self.app_id)]
        data = rejected_data(
            reason=reason,
            errors=errors,
            status=status,
            kind=self.kind,
            customer_id=self.customer_id,
            app_id=self.app_id,
            call_sid=self.call_sid,
            received_at=received_at,
            remote_addr=request.remote,
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers={str(name): value for name, value in request.headers.items()},
            body=body,
            body_size=size,
            body_cap=ing.settings.ingress.rejected_body_bytes,
            secrets=secrets,
        )
        if stream is not None:
            data["stream"] = stream
        if event_id is None:
            event_id = rejected_id(
                self.customer_id, self.app_id, self.kind, body + data["url"].encode()
            )
        return make_event(
            ing.topic(WEBHOOK_REJECTED),
            data,
            source=f"/ingress/{self.customer_id}/{self.app_id}/{self.kind}",
            event_id=event_id,
            time=received_at,
            customer_id=self.customer_id,
            app_id=self.app_id,
        )

    async def keep(self, event: CloudEvent) -> None:
        """Deliver a record from :meth:`build`; raises :class:`SpoolFull`."""
        key = self.call_sid or f"{self.customer_id}/{self.app_id}"
        await self.ing.sink.deliver(self.ing.topic(WEBHOOK_REJECTED).name, key, event.to_bytes())

    async def __call__(
        self,
        status: int,
        reason: str,
        field: str,
        errors: list[str],
        *,
        body: bytes | None = None,
        size: int | None = None,
    ) -> web.Response:
        raw = self.body if body is None else body
        size = len(raw) if size is None else size
        event = self.build(status, reason, errors, body=raw, size=size)
        try:
            await self.keep(event)
        except SpoolFull:
            # The sender still learns what was wrong; the record could not be kept.
            log.error(
                "spool full: rejected record for %s/%s not kept", self.customer_id, self.app_id
            )
        self.ing.metrics.rejected.labels(reason).inc()
        self.ing.metrics.answered(self.kind, status)
        body_out = {"error": reason, "field": field, "errors": event.data["errors"]}
        response = json_answer(status, body_out)
        if status in (408, 413):
            response.force_close()  # do not read the rest of an oversized or trickling body
        return response
