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
from collections import deque
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = ["AsyncioBackend", "AsyncioTransport", "transport_for"]


class _Connection(asyncio.Protocol):
    """One socket's received bytes, kept as the ``bytes`` objects asyncio read, never copied.

    ``asyncio.StreamReader`` copies every received chunk into one ``bytearray`` and each read
    out of it again: two copies of every body byte, a third of the time the archiver took to
    receive a 100 MiB recording here (0.26 s -> 0.17 s without them). Reading pauses while
    more than ``limit`` bytes wait to be read, as the stream reader's does.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of the first chunk already read
        self._buffered = 0
        self._eof = False
        self._error: Exception | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.transport: asyncio.Transport | None = None

    # ---- asyncio's callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._limit and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        _wake(self._readable)

    def eof_received(self) -> bool:
        self._eof = True
        _wake(self._readable)
        return False  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        _wake(self._readable)
        _wake(self._writable)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        _wake(self._writable)

    # ---- what the stream asks ---------------------------------------------------------------

    @property
    def has_data(self) -> bool:
        return bool(self._chunks)

    @property
    def at_eof(self) -> bool:
        return self._eof

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what was received (``b""`` at the end); the buffered bytes
        first, then the connection's error, if it broke."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._readable = self._loop.create_future()
            await self._readable
        first = self._chunks[0]
        if self._offset == 0 and len(first) <= max_bytes:
            self._chunks.popleft()
            data = first
        else:
            end = min(len(first), self._offset + max_bytes)
            data = first[self._offset : end]
            if end == len(first):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= self._limit // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        while self._writing_paused:
            if self._error is not None:
                raise self._error
            self._writable = self._loop.create_future()
            await self._writable
        if self._error is not None:
            raise self._error
        if self.lost:
            raise ConnectionResetError("connection lost")

    @property
    def lost(self) -> bool:
        """The connection is gone (a closing one may still send what it buffered)."""
        return self.closed.done()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, connection: _Connection, read_size: int = 0) -> None:
        self._connection = connection
        self._read_size = read_size

    @property
    def _transport(self) -> asyncio.Transport:
        transport = self._connection.transport
        if transport is None:  # asyncio makes the connection before it hands it over
            raise RuntimeError("stream used before its connection was made")
        return transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # httpcore asks for 64 KiB; a large body comes faster in fewer, larger reads (h11 takes
        # any amount), so a backend built with ``read_size`` returns what is buffered up to it.
        max_bytes = max(max_bytes, self._read_size)
        try:
            if timeout is None:
                return await self._connection.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._connection.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"read timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ReadError(f"{type(exc).__name__}: {exc}") from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            if self._connection.lost:
                raise ConnectionResetError("connection lost")
            self._transport.write(buffer)
            if timeout is None:
                await self._connection.drain()
                return
            async with asyncio.timeout(timeout):
                await self._connection.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"write timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.WriteError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        self._transport.close()
        try:
            await self._connection.closed
        except (OSError, ssl.SSLError):
            pass  # closing anyway; the peer may have gone first

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                secured = await loop.start_tls(
                    self._transport,
                    self._connection,
                    ssl_context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=timeout,
                )
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(f"TLS handshake timed out after {timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        if secured is None:  # the connection was lost during the handshake
            raise httpcore.ConnectError("connection lost during the TLS handshake")
        self._connection.transport = cast(asyncio.Transport, secured)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            return (
                self._transport.is_closing() or self._connection.at_eof or self._connection.has_data
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
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    self._new_connection,
                    host,
                    port,
                    local_addr=local,
                    happy_eyeballs_delay=0.25,
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connect timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(connection, self._read_size)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_unix_connection(self._new_connection, path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connect timed out after {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return _Stream(connection)

    def _new_connection(self) -> _Connection:
        # Reading pauses at twice the largest read, as asyncio's stream reader did.
        return _Connection(limit=2 * max(self._read_size, 2**16))

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
