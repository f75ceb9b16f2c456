"""``GET``/``HEAD /recordings/{name}``: recording files as Exotel serves them, warts included.

Exotel's recording URLs are private (HTTP basic auth) and a fetcher must cope with transient
failures, redirects and servers whose Content-Length is missing or wrong; each of those is a
per-recording switch here. Bodies are streamed chunk by chunk from ``content.py``.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from workers.exotel_double.content import iter_content
from workers.exotel_double.responses import error_response
from workers.exotel_double.state import STATE, Recording

__all__ = ["recording_endpoint"]

_REALM = 'Basic realm="exotel-recordings"'


async def recording_endpoint(request: web.Request) -> web.StreamResponse:
    if request.method not in {"GET", "HEAD"}:
        return error_response(405, f"method {request.method} not allowed", {"Allow": "GET, HEAD"})
    recording = request.app[STATE].recordings.get(request.match_info["name"])
    if recording is None:
        return error_response(404, f"no recording named {request.match_info['name']!r}")
    recording.fetches += 1
    if recording.fail_remaining > 0:
        recording.fail_remaining -= 1
        return error_response(recording.fail_status, "injected recording failure")
    if recording.username is not None and not _authorized(request, recording):
        return error_response(401, "authentication required", {"WWW-Authenticate": _REALM})
    if recording.redirect_to is not None:
        raise web.HTTPFound(recording.redirect_to)
    return await _stream(request, recording)


async def _stream(request: web.Request, recording: Recording) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": recording.content_type})
    response.headers["ETag"] = f'"{recording.sha256}"'
    if recording.length_mode == "exact":
        response.content_length = recording.size
    elif recording.length_mode == "omit":
        response.enable_chunked_encoding()
    else:
        # A lying server: aiohttp clips bytes past the declared length, and a declared length
        # beyond the real size leaves the body short; closing the connection ends it either way.
        response.content_length = recording.declared_length
        response.force_close()
    await response.prepare(request)
    if request.method == "GET":
        for chunk in iter_content(recording.size, recording.seed):
            await response.write(chunk)
    await response.write_eof()
    return response


def _authorized(request: web.Request, recording: Recording) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        user, sep, password = decoded.partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = f"{recording.username}:{recording.password or ''}".encode()
    return bool(sep) and hmac.compare_digest(f"{user}:{password}".encode(), expected)
