"""The ``/_control`` endpoints: how tests set the double up, break it and read what it saw.

Loopback dev tool, no auth. Bodies are checked strictly (unknown keys are a 400) so that a typo
in a test's set-up fails the test instead of silently configuring nothing.

    POST   /_control/reset                          forget everything
    POST   /_control/apps                           {customer_id, app_id, token, settings?,
                                                     created_at?, updated_at?}
    GET    /_control/apps/{customer_id}/{app_id}    current settings, no token needed
    DELETE /_control/apps/{customer_id}/{app_id}
    POST   /_control/faults                         {status?, count?, duration_s?, method?,
                                                     path_prefix?, retry_after?, hang_s?}
    GET    /_control/faults, DELETE /_control/faults
    PUT    /_control/latency                        {ms}
    PUT    /_control/clock                          {now: ISO 8601 | null}
    GET    /_control/requests?method=&path_prefix=  the request log; DELETE clears it
    POST   /_control/recordings                     {name, size, seed?, content_type?,
                                                     basic_auth?: {username, password},
                                                     fail_next?: {count, status?},
                                                     redirect_to?, content_length?}
    GET    /_control/recordings/{name}
    POST   /_control/emit                           {url, events: [{kind, fields?, encoding?}],
                                                     timeout_s?, headers?}
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from workers.exotel_double.content import sha256_of
from workers.exotel_double.control_body import BadRequest, Body, read_body
from workers.exotel_double.emitter import EXOTEL_TIMEOUT_S, Webhook, emit
from workers.exotel_double.payloads import build_payload
from workers.exotel_double.responses import error_response, json_response
from workers.exotel_double.schema import (
    SettingsError,
    parse_timestamp,
    render_settings,
    validate_settings_body,
)
from workers.exotel_double.state import STATE, App, Recording

__all__ = ["routes"]

routes = web.RouteTableDef()
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@routes.post("/_control/reset")
async def reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE].reset()
    return json_response({"ok": True})


@routes.post("/_control/apps")
async def register_app(request: web.Request) -> web.StreamResponse:
    keys = {"customer_id", "app_id", "token", "settings", "created_at", "updated_at"}
    body = await read_body(request, keys)
    try:
        settings = validate_settings_body(body.get("settings", dict, {}))
        created = _timestamp(body.get("created_at", str, None))
        updated = _timestamp(body.get("updated_at", str, None))
    except SettingsError as exc:
        raise BadRequest(f"settings: {exc}") from None
    app = request.app[STATE].add_app(
        body.get("customer_id", str),
        body.get("app_id", str),
        body.get("token", str),
        settings,
        created,
        updated,
    )
    return json_response(_describe_app(app), status=201)


@routes.get("/_control/apps/{customer_id}/{app_id}")
async def read_app(request: web.Request) -> web.StreamResponse:
    key = (request.match_info["customer_id"], request.match_info["app_id"])
    app = request.app[STATE].apps.get(key)
    if app is None:
        return error_response(404, f"no app {key[1]!r} for customer {key[0]!r}")
    return json_response(_describe_app(app))


@routes.delete("/_control/apps/{customer_id}/{app_id}")
async def delete_app(request: web.Request) -> web.StreamResponse:
    key = (request.match_info["customer_id"], request.match_info["app_id"])
    removed = request.app[STATE].apps.pop(key, None)
    return json_response({"deleted": removed is not None})


@routes.post("/_control/faults")
async def add_fault(request: web.Request) -> web.StreamResponse:
    keys = {"status", "count", "duration_s", "method", "path_prefix", "retry_after", "hang_s"}
    body = await read_body(request, keys)
    status = body.get("status", int, None)
    count = body.get("count", int, None)
    duration_s = body.get("duration_s", (int, float), None)
    hang_s = float(body.get("hang_s", (int, float), 0.0))
    retry_after = body.get("retry_after", (int, str), None)
    if status is not None and not 100 <= status <= 599:
        raise BadRequest("status must be an HTTP status code")
    if status is None and hang_s <= 0:
        raise BadRequest("give a status, a hang_s, or both")
    if count is None and duration_s is None:
        count = 1
    if (count is not None and count < 1) or (duration_s is not None and duration_s <= 0):
        raise BadRequest("count and duration_s must be positive")
    method = body.get("method", str, None)
    fault = request.app[STATE].add_fault(
        status=status,
        remaining=count,
        duration_s=duration_s,
        method=None if method is None else method.upper(),
        path_prefix=body.get("path_prefix", str, None),
        retry_after=None if retry_after is None else str(retry_after),
        hang_s=hang_s,
    )
    return json_response(fault.describe(_monotonic()), status=201)


@routes.get("/_control/faults")
async def list_faults(request: web.Request) -> web.StreamResponse:
    now = _monotonic()
    faults = [f.describe(now) for f in request.app[STATE].faults if f.active(now)]
    return json_response({"faults": faults})


@routes.delete("/_control/faults")
async def clear_faults(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    cleared = len(state.faults)
    state.faults.clear()
    return json_response({"cleared": cleared})


@routes.put("/_control/latency")
async def set_latency(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, {"ms"})
    ms = float(body.get("ms", (int, float)))
    if ms < 0:
        raise BadRequest("ms must be >= 0")
    request.app[STATE].latency_ms = ms
    return json_response({"ms": ms})


@routes.put("/_control/clock")
async def set_clock(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, {"now"})
    state = request.app[STATE]
    state.frozen_now = _timestamp(body.get("now", str, None))
    return json_response({"frozen": state.frozen_now is not None, "now": state.now().isoformat()})


@routes.get("/_control/requests")
async def list_requests(request: web.Request) -> web.StreamResponse:
    method = request.query.get("method", "").upper() or None
    prefix = request.query.get("path_prefix") or None
    entries = [
        entry
        for entry in request.app[STATE].requests
        if (method is None or entry["method"] == method)
        and (prefix is None or entry["path"].startswith(prefix))
    ]
    return json_response({"requests": entries})


@routes.delete("/_control/requests")
async def clear_requests(request: web.Request) -> web.StreamResponse:
    requests = request.app[STATE].requests
    cleared = len(requests)
    requests.clear()
    return json_response({"cleared": cleared})


@routes.post("/_control/recordings")
async def register_recording(request: web.Request) -> web.StreamResponse:
    keys = {
        "name",
        "size",
        "seed",
        "content_type",
        "basic_auth",
        "fail_next",
        "redirect_to",
        "content_length",
    }
    body = await read_body(request, keys)
    name = body.get("name", str)
    if not _NAME.match(name):
        raise BadRequest("name may hold letters, digits, '.', '_' and '-' only")
    size = body.get("size", int)
    if size < 0:
        raise BadRequest("size must be >= 0")
    seed = str(body.get("seed", (str, int), name))
    recording = Recording(
        name=name,
        size=size,
        seed=seed,
        sha256=await asyncio.to_thread(sha256_of, size, seed),
        content_type=body.get("content_type", str, "audio/mpeg"),
        redirect_to=body.get("redirect_to", str, None),
    )
    auth = body.get("basic_auth", dict, None)
    if auth is not None:
        auth_body = Body(auth, {"username", "password"})
        recording.username = auth_body.get("username", str)
        recording.password = auth_body.get("password", str, "")
    fail = body.get("fail_next", dict, None)
    if fail is not None:
        fail_body = Body(fail, {"count", "status"})
        recording.fail_remaining = fail_body.get("count", int)
        recording.fail_status = fail_body.get("status", int, 503)
    length = body.get("content_length", (str, int), "exact")
    if isinstance(length, int):
        recording.length_mode, recording.declared_length = "declared", length
    elif length in {"exact", "omit"}:
        recording.length_mode = length
    else:
        raise BadRequest("content_length must be 'exact', 'omit' or a number to declare")
    request.app[STATE].recordings[name] = recording
    return json_response(recording.describe(), status=201)


@routes.get("/_control/recordings/{name}")
async def read_recording(request: web.Request) -> web.StreamResponse:
    recording = request.app[STATE].recordings.get(request.match_info["name"])
    if recording is None:
        return error_response(404, "no such recording")
    return json_response(recording.describe())


@routes.post("/_control/emit")
async def emit_webhooks(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, {"url", "events", "timeout_s", "headers"})
    hooks = []
    for item in body.get("events", list):
        event = Body(item, {"kind", "fields", "encoding"})
        kind = event.get("kind", str)
        try:
            payload = build_payload(kind, event.get("fields", dict, {}))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        encoding = event.get("encoding", str, "json")
        if encoding not in {"json", "form"}:
            raise BadRequest("encoding must be 'json' or 'form'")
        hooks.append(Webhook(payload, encoding, kind))
    results = await emit(
        body.get("url", str),
        hooks,
        timeout_s=float(body.get("timeout_s", (int, float), EXOTEL_TIMEOUT_S)),
        headers=body.get("headers", dict, None),
    )
    return json_response({"results": [result.as_dict() for result in results]})


def _describe_app(app: App) -> dict[str, Any]:
    settings = render_settings(app.settings, created_at=app.created_at, updated_at=app.updated_at)
    return {"customer_id": app.customer_id, "app_id": app.app_id, "settings": settings}


def _timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        raise BadRequest(f"not an ISO 8601 timestamp: {text!r}") from None


def _monotonic() -> float:
    return time.monotonic()
