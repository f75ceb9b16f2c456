"""Exotel's dynamic stream endpoint: ``GET /v1/{customer_id}/{app_id}/stream/url``.

Exotel's stream and voicebot applets take an https URL in place of a wss one: when a call
reaches the applet, Exotel fetches it and connects to the ``url`` of the JSON it answers
(``{"url": "wss://..."}``, Exotel's stream applet guide). How it fetches is not documented; we
take a GET with the call's parameters in the query, as its other URL-fetching applets send them
(``CallSid``, ``CallFrom``/``From``, ``CallTo``/``To``, ``CustomField``...), and need ``CallSid``.

Checks, as for webhooks: sender allowlist (403), the tenant's secret (401), its rate limit
(429), then the parameters (400, recorded on ``exotel.webhook.rejected``). The answer is this
ingress's own stream URL for the tenant, on ``EXOPIPE_INGRESS_PUBLIC_URL``, with the credential
the request came with, in the same form (``token`` or a Basic password): Exotel must present
one on the handshake. ``sample-rate`` is passed on. The answer is never cached nor logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import SplitResult, quote, urlencode, urlsplit, urlunsplit

from aiohttp import web

from workers.config import IngressSettings
from workers.errors import ConfigError
from workers.ingress.auth import authenticate, candidate_secrets
from workers.ingress.limits import RateLimiter
from workers.ingress.webhook import Ingress, Refusal, admit, json_answer
from workers.url_credentials import redact_url

__all__ = ["KIND", "STREAM_URL_ROUTE", "add_stream_endpoint", "public_stream_base"]

log = logging.getLogger(__name__)

KIND = "stream-url"
STREAM_URL_ROUTE = "/v1/{customer_id}/{app_id}/stream/url"
_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_SAMPLE_RATES = ("8000", "16000", "24000")
_MAX_CALL_SID = 256


def public_stream_base(cfg: IngressSettings) -> SplitResult:
    """The ws(s) base Exotel reaches the ingress at; ``ConfigError`` for one it cannot use.

    Without ``EXOPIPE_INGRESS_PUBLIC_URL``: the listen address, right for local runs only.
    """
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    raw = cfg.public_url or f"ws://{host}:{cfg.port}"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = urlsplit("")
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            "EXOPIPE_INGRESS_PUBLIC_URL: an http(s) or ws(s) URL with a host and no credentials,"
            f" query or fragment, not {redact_url(raw)!r}"
        )
    return parts._replace(scheme=scheme, path=parts.path.rstrip("/"))


def add_stream_endpoint(app: web.Application, ing: Ingress) -> None:
    """Route the dynamic endpoint; the public base is checked now, so a bad one stops start-up."""
    base = public_stream_base(ing.settings.ingress)

    async def stream_url(request: web.Request) -> web.Response:
        return await handle_stream_url(request, ing, base)

    app.router.add_get(STREAM_URL_ROUTE, stream_url)


async def handle_stream_url(request: web.Request, ing: Ingress, base: SplitResult) -> web.Response:
    customer_id = request.match_info["customer_id"]
    app_id = request.match_info["app_id"]
    refused = admit(request, ing, KIND, customer_id, app_id)
    if refused is not None:
        return refused
    wait = ing.limiter.acquire(customer_id)
    if wait is not None:
        ing.metrics.rejected.labels("rate_limited").inc()
        ing.metrics.answered(KIND, 429)
        headers = {"Retry-After": RateLimiter.retry_after_header(wait)}
        return json_answer(429, {"error": "rate_limited"}, headers)
    refusal = Refusal(request, ing, KIND, customer_id, app_id, datetime.now(UTC))
    call_sid = request.query.get("CallSid", "")
    problem = _bad_parameter(call_sid, request.query.get("sample-rate"))
    if problem is not None:
        if problem[0] != "CallSid":
            refusal.call_sid = call_sid  # the rejected record's key
        return await refusal(400, "invalid_parameters", problem[0], [problem[1]])
    url = _stream_url(request, ing, base, customer_id, app_id)
    ing.metrics.answered(KIND, 200)
    log.info("stream URL given for %s/%s, call %r", customer_id, app_id, call_sid)
    return json_answer(200, {"url": url}, {"Cache-Control": "no-store"})


def _bad_parameter(call_sid: str, sample_rate: str | None) -> tuple[str, str] | None:
    """The parameter that makes the request unusable and why, or None."""
    if not call_sid:
        return "CallSid", "CallSid: is required (Exotel sends the call's id)"
    if len(call_sid) > _MAX_CALL_SID or not call_sid.isprintable():
        return "CallSid", f"CallSid: at most {_MAX_CALL_SID} printable characters"
    if sample_rate is not None and sample_rate not in _SAMPLE_RATES:
        return "sample-rate", f"sample-rate: one of {', '.join(_SAMPLE_RATES)}"
    return None


def _stream_url(
    request: web.Request, ing: Ingress, base: SplitResult, customer_id: str, app_id: str
) -> str:
    """The tenant's stream URL carrying the secret the request proved it holds, in its form."""
    path = f"{base.path}/v1/{quote(customer_id, safe='')}/{quote(app_id, safe='')}/stream"
    query: list[tuple[str, str]] = []
    netloc = base.netloc
    token = request.query.get("token")
    if token and authenticate(ing.secrets, customer_id, app_id, [token]):
        query.append(("token", token))
    else:  # admitted, so the Basic password is the tenant's
        password = candidate_secrets({}, request.headers.get("Authorization"))[0]
        netloc = f"{quote(customer_id, safe='')}:{quote(password, safe='')}@{netloc}"
    if "sample-rate" in request.query:
        query.append(("sample-rate", request.query["sample-rate"]))
    return urlunsplit((base.scheme, netloc, path, urlencode(query), ""))
