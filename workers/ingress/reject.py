"""The record a refused webhook leaves on ``exotel.webhook.rejected``: what came, and why not.

It carries the raw body (capped), the headers and URL with every secret removed (Authorization,
Cookie, the value of ``token`` and of every other credential parameter or URL password, see
:mod:`workers.url_credentials`, and any of the tenant's secret values wherever they appear), the
tenant and the reason. This module must never put a secret in the record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from topics.events import deterministic_id, format_time
from workers.url_credentials import REDACTED, redact_query, redact_text, redact_url

__all__ = ["rejected_data", "rejected_id"]

_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    text = redact_text(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def rejected_data(
    *,
    reason: str,
    errors: list[str],
    status: int | None,
    kind: str | None,
    customer_id: str | None,
    app_id: str | None,
    call_sid: str | None,
    received_at: datetime,
    remote_addr: str | None,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    body_size: int,
    body_cap: int,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """``data`` for a rejected record, scrubbed of ``secrets`` (the tenant's) and known ones."""
    secrets = list(secrets)
    clean_headers = {
        name: _scrub(value, secrets)
        for name, value in headers.items()
        if name.lower() not in _SECRET_HEADERS
    }
    # A GET's "body" is its query: keep it, token redacted, so the record shows what came.
    if method == "GET" and not body:
        body = redact_query(query_string).encode()
    url = redact_url(f"{path}?{query_string}" if query_string else path)
    return {
        "stage": "ingress",
        "reason": reason,
        "errors": [_scrub(e, secrets) for e in errors],
        "status": status,
        "customer_id": customer_id,
        "app_id": app_id,
        "kind": kind,
        "call_sid": call_sid,
        "received_at": format_time(received_at),
        "remote_addr": remote_addr,
        "method": method,
        "url": _scrub(url, secrets)[:4096],
        "content_type": headers.get("Content-Type"),
        "headers": clean_headers,
        # Scrub before capping, so a secret cut by the cap cannot leave a readable prefix.
        "body": _scrub(body.decode("utf-8", errors="replace"), secrets)[:body_cap],
        "body_truncated": body_size > min(len(body), body_cap),
        "body_size": body_size,
    }


def rejected_id(customer_id: str | None, app_id: str | None, kind: str | None, body: bytes) -> str:
    """The same refused request sent again (Exotel retries) gets the same id."""
    digest = hashlib.sha256(body).hexdigest()
    return deterministic_id("rejected", customer_id or "", app_id or "", kind or "", digest)
