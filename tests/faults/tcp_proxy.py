"""A small fault-injecting TCP proxy on loopback (no Toxiproxy server is installable here).

Sits between a worker and a server (the object store, or Kafka) and, on command: passes bytes
through, adds latency to every chunk, resets every connection (RST, not FIN), or blackholes
(accepts and reads, forwards and answers nothing). Healing a blackhole resets the connections
it held, as a peer does once a partition ends and it sees segments for a dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

__all__ = ["FaultProxy"]

_CHUNK = 64 * 1024


class FaultProxy:
    """``async with FaultProxy(upstream_port) as proxy``: listen on ``proxy.port``.

    ``port`` fixes the listening port (0: any free one), for a server that must be told where
    its clients reach it before the proxy starts (Kafka's advertised listener).
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.latency_s = 0.0
        self.port = port
        self.connections = 0
        self.resets = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()  # cleared while blackholed
        self._flowing.set()

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # -- faults -----------------------------------------------------------------------------

    def passthrough(self) -> None:
        self.mode, self.latency_s = "pass", 0.0
        self._flowing.set()

    def latency(self, seconds: float) -> None:
        self.mode, self.latency_s = "pass", seconds
        self._flowing.set()

    def reset(self) -> None:
        """Reset every open connection, and every new one until another mode is set."""
        self.mode = "reset"
        self._flowing.set()
        self._reset_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"
        self._flowing.clear()

    def heal(self) -> None:
        """End a blackhole: connections it held are reset, new ones pass."""
        was = self.mode
        self.passthrough()
        if was == "blackhole":
            self._reset_all()

    # -- plumbing ---------------------------------------------------------------------------

    def _reset_all(self) -> None:
        for writer in list(self._open):
            _rst(writer)
            self.resets += 1
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            _rst(writer)
            self.resets += 1
            return
        self._open.add(writer)
        if self.mode == "blackhole":
            await self._swallow(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _rst(writer)
            self._open.discard(writer)
            return
        self._open.add(up_writer)
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        self._tasks.difference_update(pumps)
        for w in (writer, up_writer):
            self._open.discard(w)
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                chunk = await reader.read(_CHUNK)
                if not chunk:
                    return
                await self._flowing.wait()  # blackholed: held, neither side hears anything
                if self.mode == "reset":
                    return
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                writer.write(chunk)
                await writer.drain()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while writer in self._open and await reader.read(_CHUNK):
                pass


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets a RST (connection reset), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
