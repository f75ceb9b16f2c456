"""The web app factory: spec API, recordings, control API (streams too) and health check.

One app per double, each with its own :class:`DoubleState`, so tests can run several side by
side and a fresh app is a clean slate.
"""

from __future__ import annotations

from aiohttp import web

from workers.exotel_double import API_PREFIX
from workers.exotel_double.api import not_found, settings_endpoint
from workers.exotel_double.control_api import routes
from workers.exotel_double.control_body import control_errors
from workers.exotel_double.middleware import double_middleware
from workers.exotel_double.recordings import recording_endpoint
from workers.exotel_double.responses import json_response
from workers.exotel_double.state import STATE, DoubleState
from workers.exotel_double.stream_control import cancel_streams_on_cleanup, stream_routes

__all__ = ["create_app"]


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"ok": True})


def create_app(state: DoubleState | None = None) -> web.Application:
    """Build the double; pass ``state`` to inspect or pre-load it from in-process tests."""
    app = web.Application(middlewares=[control_errors, double_middleware])
    app[STATE] = state if state is not None else DoubleState()
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_route(
        "*", API_PREFIX + "/{customer_id}/apps/{app_id}/settings", settings_endpoint
    )
    app.router.add_route("*", API_PREFIX + "/{tail:.*}", not_found)
    app.router.add_route("*", "/recordings/{name}", recording_endpoint)
    app.router.add_routes(routes)
    app.router.add_routes(stream_routes)
    app.on_cleanup.append(cancel_streams_on_cleanup)
    return app
