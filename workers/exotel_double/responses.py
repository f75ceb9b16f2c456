"""JSON responses in the spec's envelope, encoded with the project's codec (orjson)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from workers.json_codec import dumps

__all__ = ["error_response", "json_response", "success_response"]


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(payload), status=status, content_type="application/json", headers=headers
    )


def success_response(data: Any, status: int = 200) -> web.Response:
    """``{"success": true, "data": ...}`` as every spec example response is shaped."""
    return json_response({"success": True, "data": data}, status)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The spec shows no error body; this keeps errors JSON and names what went wrong."""
    body = {"success": False, "error": {"code": status, "message": message}}
    return json_response(body, status, headers)
