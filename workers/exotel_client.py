"""THE client for Exotel's App Settings API (``/work/shared/exotel-app-settings-api.txt``).

``GET`` and ``PUT {base_url}/{customer_id}/apps/{app_id}/settings`` with ``Authorization: Bearer
<app token>`` (from the :class:`~workers.secret_store.SecretStore`, never from a message) and
``Content-Type: application/json``. A PUT body is exactly the fields the caller gave: the API
updates only those (partial update, as in the spec's example request).

Failures are translated here, once, into the project's taxonomy (``raise ... from exc``):

* network errors, timeouts, 5xx and 429 -> :class:`ExotelUnavailable` (a ``RetryableError``,
  with the server's ``Retry-After`` in seconds when it sent one);
* 400 -> :class:`ExotelBadRequest`, 401 -> :class:`ExotelUnauthorized`, 404 ->
  :class:`ExotelNotFound`, any other 4xx -> :class:`ExotelClientError` (all ``PermanentError``
  with ``status`` and the API's decoded error ``body``);
* no token configured for the app -> :class:`MissingToken` (permanent, no request is sent);
* a 2xx whose body is not the spec's envelope -> :class:`UnexpectedResponse` (permanent).

This module must never log, return or put into an exception the token or the Authorization
header, and never retry by itself: callers wrap calls in :func:`workers.retry.retry_async`.
One :class:`ExotelClient` per process. It spreads requests over several ``httpx.AsyncClient`` s of
at most ``pool_size`` HTTP/1.1 connections each (the spec says nothing of HTTP/2 and the double
speaks HTTP/1.1 only): httpcore checks every connection of a pool, with socket calls, each time
a request starts or ends, so the CPU a request costs grows with the pool (64 in flight against
the double: 8.4 ms of CPU per request with one pool of 64 connections, 1.7 ms with 4 pools of
16, 1.05 ms with 8 pools of 8). Connections run on asyncio streams
(:mod:`workers.asyncio_transport`), not anyio's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from workers import json_codec
from workers.asyncio_transport import transport_for
from workers.config import Settings
from workers.errors import PermanentError, RetryableError
from workers.secret_store import SecretStore

__all__ = [
    "SETTINGS_FIELDS",
    "AppSettings",
    "ExotelBadRequest",
    "ExotelClient",
    "ExotelClientError",
    "ExotelError",
    "ExotelNotFound",
    "ExotelUnauthorized",
    "ExotelUnavailable",
    "MissingToken",
    "UnexpectedResponse",
    "default_timeout",
    "parse_retry_after",
]

# The resource's fields in the spec's order; responses also carry created_at/updated_at.
SETTINGS_FIELDS: tuple[str, ...] = (
    "popup_url",
    "missed_call_url",
    "callback_url",
    "recording_enabled",
    "recording_url",
    "streaming_enabled",
    "streaming_url",
)
# An error body is kept for the result record; a hostile or broken server must not bloat it.
_MAX_ERROR_BODY = 4096


class ExotelError(PermanentError):
    """The API refused the request; ``status`` and the decoded error ``body`` say how."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ExotelBadRequest(ExotelError):
    """400: the API found the parameters invalid."""


class ExotelUnauthorized(ExotelError):
    """401: the app token is invalid or expired."""


class ExotelNotFound(ExotelError):
    """404: the app does not exist for that customer."""


class ExotelClientError(ExotelError):
    """Any other 4xx (405, 409, 413, 422 ...): the request itself is wrong; do not retry."""


class MissingToken(ExotelError):
    """No token for this customer/app in the secrets file: nothing is sent."""


class UnexpectedResponse(ExotelError):
    """A 2xx that is not ``{"success": true, "data": {"app_id", "settings"}}``."""


class ExotelUnavailable(RetryableError):
    """Network error, timeout, 429 or 5xx: the same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class AppSettings:
    """One app's settings as the API returned them (all seven fields, nulls kept)."""

    app_id: str
    settings: dict[str, Any]
    updated_at: str | None
    created_at: str | None = None


def default_timeout(total: float = 10.0, connect: float = 5.0) -> httpx.Timeout:
    """Explicit limits for every phase: a stuck server costs at most ``total`` per phase."""
    return httpx.Timeout(total, connect=connect)


class ExotelClient:
    """Async App Settings client; create once, ``await aclose()`` at shutdown."""

    def __init__(
        self,
        base_url: str,
        secrets: SecretStore,
        *,
        timeout: httpx.Timeout | None = None,
        max_connections: int = 100,
        pool_size: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._secrets = secrets
        # A given transport does its own pooling (tests pass httpx.MockTransport): one client.
        pools = 1 if transport is not None else math.ceil(max_connections / max(pool_size, 1))
        per_pool = math.ceil(max_connections / pools)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        context = httpx.create_ssl_context() if transport is None else None
        self._pools = [
            _Pool(
                httpx.AsyncClient(
                    timeout=timeout or default_timeout(),
                    limits=limits,
                    # A redirect would resend the bearer token to wherever it points: refuse them.
                    follow_redirects=False,
                    # asyncio streams rather than anyio's under httpcore (asyncio_transport).
                    transport=transport or transport_for(self._base_url, limits, context),
                )
            )
            for _ in range(pools)
        ]

    @classmethod
    def from_settings(
        cls, settings: Settings, secrets: SecretStore | None = None, **options: Any
    ) -> ExotelClient:
        applier = settings.applier
        return cls(
            settings.exotel_base_url,
            secrets if secrets is not None else SecretStore.load(settings.secrets_file),
            timeout=default_timeout(applier.http_timeout, applier.http_connect_timeout),
            max_connections=max(applier.in_flight, 1),
            pool_size=applier.http_pool_size,
            **options,
        )

    def settings_url(self, customer_id: str, app_id: str) -> str:
        # Identifiers are path segments: quote everything, so "../x" or "a/b" cannot change the
        # resource that is addressed.
        return (
            f"{self._base_url}/{quote(customer_id, safe='')}/apps/{quote(app_id, safe='')}/settings"
        )

    async def get_settings(self, customer_id: str, app_id: str) -> AppSettings:
        return await self._call("GET", customer_id, app_id, None)

    async def put_settings(
        self, customer_id: str, app_id: str, changes: dict[str, Any]
    ) -> AppSettings:
        """PUT exactly ``changes`` (a partial update); returns the settings after the update."""
        unknown = sorted(set(changes) - set(SETTINGS_FIELDS))
        if unknown:
            raise ExotelBadRequest(f"not App Settings fields: {', '.join(unknown)}")
        return await self._call("PUT", customer_id, app_id, changes)

    async def _call(
        self, method: str, customer_id: str, app_id: str, body: dict[str, Any] | None
    ) -> AppSettings:
        token = self._secrets.app_token(customer_id, app_id)
        if token is None:
            raise MissingToken(f"no app token configured for {customer_id}/{app_id}")
        url = self.settings_url(customer_id, app_id)
        headers = {"Authorization": f"Bearer {token.reveal()}", "Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json_codec.dumps(body)
        what = f"{method} {customer_id}/{app_id} settings"
        # The least busy pool: callers bound concurrency to max_connections, so a request never
        # waits for a connection while another pool has one free.
        pool = min(self._pools, key=_Pool.busy)
        pool.active += 1
        try:
            response = await pool.http.request(method, url, headers=headers, content=content)
        except httpx.TimeoutException as exc:
            raise ExotelUnavailable(f"{what}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ExotelUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        finally:
            pool.active -= 1
        return _interpret(what, response)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.http.aclose()

    async def __aenter__(self) -> ExotelClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _Pool:
    """One ``httpx.AsyncClient`` and how many requests it is serving now."""

    __slots__ = ("active", "http")

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.active = 0

    def busy(self) -> int:
        return self.active


def _interpret(what: str, response: httpx.Response) -> AppSettings:
    status = response.status_code
    if 200 <= status < 300:
        return _parse_success(what, response)
    body = _error_body(response)
    message = f"{what}: HTTP {status}: {_error_message(body)}"
    if status == 429 or status >= 500:
        raise ExotelUnavailable(
            message, status=status, body=body, retry_after=parse_retry_after(response)
        )
    kind: type[ExotelError] = {
        400: ExotelBadRequest,
        401: ExotelUnauthorized,
        404: ExotelNotFound,
    }.get(status, ExotelClientError)
    raise kind(message, status=status, body=body)


def _parse_success(what: str, response: httpx.Response) -> AppSettings:
    try:
        payload = json_codec.loads(response.content)
    except json_codec.JSONDecodeError as exc:
        raise UnexpectedResponse(
            f"{what}: HTTP {response.status_code} body is not JSON",
            status=response.status_code,
            body=_error_body(response),
        ) from exc
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or payload.get("success") is not True:
        data = None
    settings = data.get("settings") if data is not None else None
    if data is None or not isinstance(settings, dict):
        raise UnexpectedResponse(
            f"{what}: HTTP {response.status_code} is not the App Settings envelope",
            status=response.status_code,
            body=_error_body(response),
        )
    return AppSettings(
        app_id=str(data.get("app_id", "")),
        settings={name: settings.get(name) for name in SETTINGS_FIELDS},
        updated_at=_text_or_none(settings.get("updated_at")),
        created_at=_text_or_none(settings.get("created_at")),
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _error_body(response: httpx.Response) -> Any:
    """The API's error body: decoded JSON when it is JSON, else its (capped) text."""
    raw = response.content[:_MAX_ERROR_BODY]
    try:
        return json_codec.loads(raw)
    except json_codec.JSONDecodeError:
        return raw.decode("utf-8", errors="replace") or None


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    if isinstance(body, str):
        return body[:200]
    return "no error message"


def parse_retry_after(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP-date; ``None`` when absent/bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
