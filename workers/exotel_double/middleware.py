"""What wraps every non-control request: the request log, added latency and injected faults.

Kept out of the handlers so that faults and latency hit the settings API and recordings alike,
and so that the log records exactly what a client sent, including requests a fault answered.
The control API and ``/healthz`` pass straight through: tests must be able to drive the double
while it is "down".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from workers.exotel_double import CONTROL_PREFIX
from workers.exotel_double.responses import error_response
from workers.exotel_double.schema import format_timestamp
from workers.exotel_double.state import STATE, Fault
from workers.json_codec import JSONDecodeError, loads

__all__ = ["double_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REDACTED = "REDACTED"


@web.middleware
async def double_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX) or request.path == "/healthz":
        return await handler(request)
    state = request.app[STATE]
    entry = state.log_request(await _describe(request))
    if state.latency_ms > 0:
        await asyncio.sleep(state.latency_ms / 1000)
    fault = state.take_fault(request.method, request.path)
    if fault is not None:
        entry["fault"] = fault.id
        response = await _apply(fault)
        if response is not None:
            entry["status"] = response.status
            return response
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        entry["status"] = exc.status
        raise
    except Exception:
        entry["status"] = 500
        raise
    entry["status"] = response.status
    return response


async def _apply(fault: Fault) -> web.StreamResponse | None:
    """Hang, then answer with the fault's status; a hang without a status lets the request on."""
    if fault.hang_s > 0:
        await asyncio.sleep(fault.hang_s)
    if fault.status is None:
        return None
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    return error_response(fault.status, f"injected fault {fault.id}", headers)


async def _describe(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = loads(raw) if raw else None
    except JSONDecodeError:
        parsed = None
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    scheme = None
    if "authorization" in headers:
        scheme = headers["authorization"].partition(" ")[0] or None
        headers["authorization"] = REDACTED
    return {
        "at": format_timestamp(datetime.now(UTC)),
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "headers": headers,
        "auth_scheme": scheme,
        "json": parsed,
        "raw_body": text,
        "status": None,
        "fault": None,
    }
