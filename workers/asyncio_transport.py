"""An httpx transport whose connections are plain asyncio streams instead of anyio's.

httpcore's default backend runs every read and write through anyio (a cancel scope each) and
every liveness check of a pooled connection through anyio's typed attributes and a ``poll`` of
the socket. With 64 API calls in flight that was 17% of the settings worker's CPU, a quarter of
what each call cost. This backend does the same work with asyncio directly, through httpcore's
public ``AsyncNetworkBackend`` interface:

* timeouts with ``asyncio.timeout`` (the same per-phase httpx timeouts), mapped to httpcore's
  ``ConnectTimeout``/``ReadTimeout``/``WriteTimeout``, and socket errors to ``ConnectError``/
  ``ReadError``/``WriteError``, which httpx maps on to its own exceptions as usual;
* TLS with ``StreamWriter.start_tls`` and the SSL context httpx built (certificate and host
  name verification unchanged);
* TCP_NODELAY as anyio sets it (asyncio sets it on every TCP transport).

A connection counts as readable (so httpcore drops it instead of reusing it) when the peer has
closed it or sent bytes nobody asked for: asyncio reads the socket as data comes, so that shows
in the stream's buffer, not in a ``poll`` of the socket.

It never handles proxies: :func:`transport_for` falls back to httpx's own transport when the
environment names a proxy for the URL, so ``HTTPS_PROXY`` and friends keep working.
"""

# httpcore's AsyncNetworkStream/AsyncNetworkBackend interface takes timeouts as arguments.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = ["AsyncioBackend", "AsyncioTransport", "transport_for"]


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_size: int = 0
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._read_size = read_size

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # httpcore asks for 64 KiB; a large body comes faster in fewer, larger reads (h11 takes
        # any amount), so a backend built with ``read_size`` returns what is buffered up to it.
        max_bytes = max(max_bytes, self._read_size)
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"read timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ReadError(f"{type(exc).__name__}: {exc}") from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if timeout is None:
                await self._writer.drain()
                return
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"write timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.WriteError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass  # closing anyway; the peer may have gone first

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(
                    ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
                )
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(f"TLS handshake timed out after {timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            return (
                self._writer.is_closing()
                or self._reader.at_eof()
                or bool(getattr(self._reader, "_buffer", b""))
            )
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend over ``asyncio.open_connection``.

    ``read_size`` (0: what httpcore asks for, 64 KiB) is the most one read returns and the
    stream's buffer limit: for the archiver's downloads, where the per-read cost (a timer, h11,
    httpcore and httpx per chunk) was paid 1,600 times per 100 MiB (400 times with 256 KiB).
    """

    def __init__(self, read_size: int = 0) -> None:
        self._read_size = read_size

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    local_addr=local,
                    happy_eyeballs_delay=0.25,
                    limit=max(self._read_size, 2**16),
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connect timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(reader, writer, self._read_size)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connect timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's HTTP/1.1 transport (its pool, its exception mapping) over :class:`AsyncioBackend`."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: ssl.SSLContext | str | bool = True,
        read_size: int = 0,
    ) -> None:
        # One context for both pools (building one loads the CA bundle: ~25 ms).
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        super().__init__(limits=limits, verify=context)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(read_size),
        )


def transport_for(
    url: str, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncBaseTransport | None:
    """An :class:`AsyncioTransport` for ``url``; ``None`` (httpx's default) behind a proxy.

    ``ssl_context`` (default: httpx's, from certifi or ``SSL_CERT_FILE``) may be shared by
    several transports.
    """
    scheme = urlsplit(url).scheme
    proxies = urllib.request.getproxies()
    if proxies.get(scheme) or proxies.get("all"):
        host = urlsplit(url).hostname or ""
        if not urllib.request.proxy_bypass(host):
            return None
    return AsyncioTransport(limits=limits, verify=ssl_context or True)
