"""Reading a ``/_control`` request body: a JSON object, field by field, with strict type checks.

Strict so that a typo in a test's set-up fails the test (a 400 naming the problem, turned into a
response by :func:`control_errors`) instead of silently configuring nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from workers.exotel_double.responses import error_response
from workers.json_codec import JSONDecodeError, loads

__all__ = ["BadRequest", "Body", "control_errors", "read_body"]

_MISSING: Any = object()


class BadRequest(Exception):
    """A control request the double refuses; the message says why."""


class Body:
    """A JSON object from a control request, read field by field with type checks."""

    def __init__(self, data: Any, allowed: set[str]) -> None:
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise BadRequest(f"unknown key(s): {', '.join(unknown)}; allowed: {sorted(allowed)}")
        self.data = data

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        if name not in self.data or self.data[name] is None:
            if default is _MISSING:
                raise BadRequest(f"{name} is required")
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in _as_tuple(kinds):
            raise BadRequest(f"{name} has the wrong type")
        if not isinstance(value, kinds):
            raise BadRequest(f"{name} has the wrong type")
        return value


async def read_body(request: web.Request, allowed: set[str]) -> Body:
    raw = await request.read()
    try:
        return Body(loads(raw) if raw else {}, allowed)
    except JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None


@web.middleware
async def control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn a bad control request into a JSON 400 naming the problem."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return error_response(400, str(exc))


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)
