"""Exotel's dynamic stream endpoint, as the double follows it: an http(s) streaming URL is
fetched first, and the stream goes to the WebSocket URL its JSON answer names (``url``).

Exotel's stream applet guide gives the answer's shape only. The request is an assumption, the
same one the ingress documents: a GET with the URL's own query kept and the call's parameters
added, as Exotel's other URL-fetching applets send them; credentials in the URL go as a Basic
header (the caller splits them off). Errors never quote the answer: it carries a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from workers import json_codec
from workers.exotel_double.stream_frames import StreamIdentity

__all__ = ["DYNAMIC_SCHEMES", "NotResolved", "call_parameters", "is_dynamic", "resolve"]

DYNAMIC_SCHEMES = frozenset({"http", "https"})


class NotResolved(Exception):
    """The endpoint gave no WebSocket URL; ``status`` is its answer's (None: no answer)."""

    def __init__(self, status: int | None, error: str) -> None:
        super().__init__(error)
        self.status = status


def is_dynamic(url: str) -> bool:
    return urlsplit(url).scheme.lower() in DYNAMIC_SCHEMES


def call_parameters(who: StreamIdentity) -> list[tuple[str, str]]:
    """The call's parameters, spelled both ways Exotel spells them across its applets."""
    return [
        ("CallSid", who.call_sid),
        ("CallFrom", who.from_),
        ("CallTo", who.to),
        ("From", who.from_),
        ("To", who.to),
        ("Direction", "incoming"),
    ]


async def resolve(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str], who: StreamIdentity
) -> str:
    """GET the endpoint ``url`` (no userinfo) for the call; the ``url`` its answer names."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True) + call_parameters(who)
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    try:
        response = await client.get(bare, params=params, headers=dict(headers))
    except httpx.HTTPError as exc:
        raise NotResolved(None, f"dynamic endpoint: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise NotResolved(response.status_code, f"dynamic endpoint answered {response.status_code}")
    try:
        answer = json_codec.loads(response.content)
    except json_codec.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("url"), str):
        raise NotResolved(200, 'dynamic endpoint: the answer is not JSON with a "url" string')
    return answer["url"]
