"""The spec's two endpoints: GET and PUT ``/{customer_id}/apps/{app_id}/settings``.

Checks run in the order a client can observe: method (405), app existence (404), bearer token
(401), then the body (400). Only the fields a PUT carries change.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from workers.exotel_double.responses import error_response, success_response
from workers.exotel_double.schema import SettingsError, render_settings, validate_settings_body
from workers.exotel_double.state import STATE, App, DoubleState
from workers.json_codec import JSONDecodeError, loads

__all__ = ["not_found", "settings_endpoint"]

_ALLOWED = "GET, PUT"


async def settings_endpoint(request: web.Request) -> web.StreamResponse:
    """One route for every method, so that anything but GET/PUT gets the JSON 405."""
    if request.method not in {"GET", "PUT"}:
        return error_response(
            405, f"method {request.method} not allowed; use GET or PUT", {"Allow": _ALLOWED}
        )
    state = request.app[STATE]
    customer_id = request.match_info["customer_id"]
    app_id = request.match_info["app_id"]
    app = state.apps.get((customer_id, app_id))
    if app is None:
        return error_response(404, f"app {app_id!r} not found for customer {customer_id!r}")
    problem = _auth_problem(request, app)
    if problem is not None:
        return error_response(401, problem, {"WWW-Authenticate": "Bearer"})
    if request.method == "GET":
        settings = render_settings(
            app.settings, created_at=app.created_at, updated_at=app.updated_at
        )
        return success_response({"app_id": app.app_id, "settings": settings})
    return await _put(request, state, app)


async def not_found(request: web.Request) -> web.StreamResponse:
    """Unknown paths under the API prefix still answer in the JSON error shape."""
    return error_response(404, f"no such resource: {request.path}")


async def _put(request: web.Request, state: DoubleState, app: App) -> web.StreamResponse:
    if request.content_type != "application/json":
        return error_response(
            400, f"Content-Type must be application/json, not {request.content_type!r}"
        )
    raw = await request.read()
    try:
        body = loads(raw)
    except JSONDecodeError as exc:
        return error_response(400, f"request body is not valid JSON: {exc}")
    try:
        changes = validate_settings_body(body)
    except SettingsError as exc:
        return error_response(400, str(exc))
    app.settings.update(changes)
    app.updated_at = state.now()
    settings = render_settings(app.settings, updated_at=app.updated_at)
    return success_response({"app_id": app.app_id, "settings": settings})


def _auth_problem(request: web.Request, app: App) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return "missing Authorization header; expected 'Bearer <app_token>'"
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "Authorization must be 'Bearer <app_token>'"
    if not hmac.compare_digest(token.strip().encode(), app.token.encode()):
        return "invalid or expired token"
    return None
