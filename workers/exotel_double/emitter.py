"""Send webhook payloads to a URL with httpx, the way Exotel would when a call happens.

Used by the control API (``POST /_control/emit``) and directly by demos: one POST per payload,
JSON or form-encoded (Exotel's docs show both for StatusCallback), with Exotel's 15 s deadline.
Results carry the status code or the transport error, never raise, so a caller can assert on a
receiver that is down as easily as on one that answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from workers.json_codec import dumps

__all__ = ["EXOTEL_TIMEOUT_S", "EmitResult", "Webhook", "emit"]

EXOTEL_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Webhook:
    """One payload to send and how to encode it (``json`` or ``form``)."""

    payload: Mapping[str, Any]
    encoding: str = "json"
    kind: str | None = None


@dataclass(frozen=True)
class EmitResult:
    kind: str | None
    status: int | None
    error: str | None
    payload: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def emit(
    url: str,
    webhooks: Sequence[Webhook],
    *,
    timeout_s: float = EXOTEL_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> list[EmitResult]:
    """POST each webhook in order and report what came back."""
    results = []
    async with httpx.AsyncClient(timeout=timeout_s, headers=dict(headers or {})) as client:
        for hook in webhooks:
            results.append(await _send(client, url, hook))
    return results


async def _send(client: httpx.AsyncClient, url: str, hook: Webhook) -> EmitResult:
    if hook.encoding == "json":
        request: dict[str, Any] = {
            "content": dumps(dict(hook.payload)),
            "headers": {"Content-Type": "application/json"},
        }
    elif hook.encoding == "form":
        fields = {k: "" if v is None else str(v) for k, v in hook.payload.items()}
        request = {"data": fields}
    else:
        raise ValueError(f"unknown encoding {hook.encoding!r}; use 'json' or 'form'")
    try:
        response = await client.post(url, **request)
    except httpx.HTTPError as exc:
        return EmitResult(hook.kind, None, f"{type(exc).__name__}: {exc}", hook.payload)
    return EmitResult(hook.kind, response.status_code, None, hook.payload)
