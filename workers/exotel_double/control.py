"""Clients for the double's ``/_control`` API, sync (:class:`DoubleControl`) and async
(:class:`AsyncDoubleControl`), with one definition of every call.

Tests use these instead of hand-written HTTP so that set-up reads as intent
(``ctl.fail_next(2, 503, method="PUT")``) and a bad set-up raises :class:`ControlError` at once.
Every method of the async client returns an awaitable with the same result as the sync one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from workers.exotel_double import API_PREFIX
from workers.exotel_double.schema import format_timestamp
from workers.json_codec import dumps, loads

__all__ = ["AsyncDoubleControl", "ControlError", "DoubleControl"]


class ControlError(RuntimeError):
    """The double refused a control request (bad set-up in a test) or is unreachable."""


class _ControlCalls:
    """The control API, call by call; subclasses say how a request is sent."""

    base_url: str

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        pick: str | None = None,
    ) -> Any:
        raise NotImplementedError

    @property
    def api_base_url(self) -> str:
        """What to configure as the Exotel base URL (``EXOPIPE_EXOTEL_BASE_URL``)."""
        return self.base_url + API_PREFIX

    def recording_url(self, name: str) -> str:
        return f"{self.base_url}/recordings/{name}"

    def health(self) -> Any:
        return self._call("GET", "/healthz")

    def reset(self) -> Any:
        """Forget apps, faults, latency, the request log, recordings and any frozen clock."""
        return self._call("POST", "/_control/reset")

    def register_app(
        self,
        customer_id: str,
        app_id: str,
        token: str,
        settings: Mapping[str, Any] | None = None,
        *,
        created_at: datetime | str | None = None,
        updated_at: datetime | str | None = None,
    ) -> Any:
        body = {"customer_id": customer_id, "app_id": app_id, "token": token}
        body |= _drop_none(
            settings=dict(settings) if settings is not None else None,
            created_at=_stamp(created_at),
            updated_at=_stamp(updated_at),
        )
        return self._call("POST", "/_control/apps", body=body)

    def app_settings(self, customer_id: str, app_id: str) -> Any:
        """An app's current settings (with created_at/updated_at), no token needed."""
        return self._call("GET", f"/_control/apps/{customer_id}/{app_id}", pick="settings")

    def delete_app(self, customer_id: str, app_id: str) -> Any:
        return self._call("DELETE", f"/_control/apps/{customer_id}/{app_id}", pick="deleted")

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: int | str | None = None,
    ) -> Any:
        """Answer the next ``count`` matching requests with ``status``."""
        body = {"count": count, "status": status}
        body |= _drop_none(method=method, path_prefix=path_prefix, retry_after=retry_after)
        return self._call("POST", "/_control/faults", body=body)

    def fail_for(
        self,
        seconds: float,
        status: int = 503,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: int | str | None = None,
    ) -> Any:
        """Answer every matching request with ``status`` for ``seconds``."""
        body = {"duration_s": seconds, "status": status}
        body |= _drop_none(method=method, path_prefix=path_prefix, retry_after=retry_after)
        return self._call("POST", "/_control/faults", body=body)

    def hang_next(
        self,
        seconds: float,
        count: int = 1,
        *,
        status: int | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> Any:
        """Hold the next ``count`` matching requests for ``seconds``, then answer ``status``
        (or, without one, handle them normally: the client may have given up by then)."""
        body = {"hang_s": seconds, "count": count}
        body |= _drop_none(status=status, method=method, path_prefix=path_prefix)
        return self._call("POST", "/_control/faults", body=body)

    def faults(self) -> Any:
        return self._call("GET", "/_control/faults", pick="faults")

    def clear_faults(self) -> Any:
        return self._call("DELETE", "/_control/faults", pick="cleared")

    def set_latency(self, ms: float) -> Any:
        """Delay every non-control request by ``ms`` milliseconds (0 turns it off)."""
        return self._call("PUT", "/_control/latency", body={"ms": ms})

    def freeze_clock(self, now: datetime | str | None) -> Any:
        """Pin the double's clock (timestamps it writes) to ``now``; ``None`` unfreezes it."""
        return self._call("PUT", "/_control/clock", body={"now": _stamp(now)})

    def requests(self, *, method: str | None = None, path_prefix: str | None = None) -> Any:
        """The request log, oldest first: method, path, headers (Authorization redacted),
        json/raw_body and the status returned."""
        params = _drop_none(method=method, path_prefix=path_prefix)
        return self._call("GET", "/_control/requests", params=params, pick="requests")

    def clear_requests(self) -> Any:
        return self._call("DELETE", "/_control/requests", pick="cleared")

    def register_recording(
        self,
        name: str,
        size: int,
        seed: str | int | None = None,
        *,
        content_type: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        fail_next: int = 0,
        fail_status: int = 503,
        redirect_to: str | None = None,
        content_length: str | int = "exact",
    ) -> Any:
        """Serve ``size`` deterministic bytes at ``/recordings/{name}``; the result has sha256.

        ``content_length``: ``"exact"``, ``"omit"`` (chunked) or a number to declare instead.
        """
        body: dict[str, Any] = {"name": name, "size": size, "content_length": content_length}
        body |= _drop_none(seed=seed, content_type=content_type, redirect_to=redirect_to)
        if basic_auth is not None:
            body["basic_auth"] = {"username": basic_auth[0], "password": basic_auth[1]}
        if fail_next:
            body["fail_next"] = {"count": fail_next, "status": fail_status}
        return self._call("POST", "/_control/recordings", body=body)

    def recording(self, name: str) -> Any:
        return self._call("GET", f"/_control/recordings/{name}")

    def start_stream(self, customer_id: str, app_id: str, **options: Any) -> Any:
        """Start a streamed call to the app's ``streaming_url`` (streaming must be on for it).

        ``options`` are the body keys of ``POST /_control/apps/{c}/{a}/streams``
        (``duration_s``, ``speed``, ``dtmf``, ...; ``from_`` for ``from``). Returns at once with
        the stream's description (``stream_sid``, ``audio``); :meth:`stream` follows it.
        """
        body = {("from" if k == "from_" else k): v for k, v in options.items() if v is not None}
        return self._call("POST", f"/_control/apps/{customer_id}/{app_id}/streams", body=body)

    def stream(self, stream_sid: str, *, wait_s: float | None = None) -> Any:
        """A stream's result so far; with ``wait_s``, once it ended or ``wait_s`` passed
        (keep ``wait_s`` under the client's timeout)."""
        params = {"wait_s": str(wait_s)} if wait_s is not None else None
        return self._call("GET", f"/_control/streams/{stream_sid}", params=params)

    def streams(self) -> Any:
        return self._call("GET", "/_control/streams", pick="streams")

    def emit(
        self,
        url: str,
        events: Sequence[str | Mapping[str, Any]],
        *,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Have the double POST webhooks to ``url``; each event is a kind
        (``"incoming_call"``, ``"recording_ready"``, ``"missed_call"``, ``"call_status"``) or
        ``{"kind", "fields", "encoding"}``. Returns one ``{kind, status, error, payload}`` each."""
        items = [{"kind": event} if isinstance(event, str) else dict(event) for event in events]
        body: dict[str, Any] = {"url": url, "events": items}
        body |= _drop_none(timeout_s=timeout_s, headers=dict(headers) if headers else None)
        return self._call("POST", "/_control/emit", body=body, pick="results")


class DoubleControl(_ControlCalls):
    """Blocking client; ``with DoubleControl("http://127.0.0.1:8090") as ctl: ...``."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        pick: str | None = None,
    ) -> Any:
        try:
            response = self._client.request(method, path, **_request_args(body, params))
        except httpx.HTTPError as exc:
            raise ControlError(f"{method} {path}: {exc}") from exc
        return _result(method, path, response, pick)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DoubleControl:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncDoubleControl(_ControlCalls):
    """Async client; ``async with AsyncDoubleControl(url) as ctl: await ctl.reset()``."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def _call(  # type: ignore[override]
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        pick: str | None = None,
    ) -> Any:
        try:
            response = await self._client.request(method, path, **_request_args(body, params))
        except httpx.HTTPError as exc:
            raise ControlError(f"{method} {path}: {exc}") from exc
        return _result(method, path, response, pick)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncDoubleControl:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _request_args(body: Any, params: Mapping[str, str] | None) -> dict[str, Any]:
    args: dict[str, Any] = {"params": dict(params) if params else None}
    if body is not None:
        args["content"] = dumps(body)
        args["headers"] = {"Content-Type": "application/json"}
    return args


def _result(method: str, path: str, response: httpx.Response, pick: str | None) -> Any:
    if response.status_code >= 400:
        raise ControlError(f"{method} {path}: {response.status_code} {response.text}")
    data = loads(response.content)
    return data[pick] if pick is not None else data


def _drop_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _stamp(value: datetime | str | None) -> str | None:
    return format_timestamp(value) if isinstance(value, datetime) else value
