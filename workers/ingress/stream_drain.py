"""Frames a peer sends after the ingress closed its stream: read, counted, discarded.

When the ingress closes a stream (1013, 4408, 1008, 1001, 1011), aiohttp's ``close()`` sends the
close frame and then reads until the peer's close frame, dropping every frame before it unread:
those Exotel had sent, or sends until it sees the close. :class:`AfterClose` wraps the
connection's message queue so that, once armed, each frame read is counted; the stream's
``closed`` record, written after the close returns, counts them in ``lost``. The wait is bounded
in time by the WebSocket's close timeout and in bytes by ``max_bytes``: past it the wait stops
as it does at the timeout (aiohttp closes the transport).

aiohttp has no hook for this: the queue is its ``_reader`` attribute (aiohttp is pinned in
requirements.lock, and the unit tests fail if it moves).
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSMessage, WSMsgType, web

__all__ = ["AfterClose", "DrainCapped"]

_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


class DrainCapped(Exception):
    """The peer sent more than the bound after the close: stop waiting for its close frame."""


class AfterClose:
    """Counts the frames read from ``ws`` once :meth:`arm` is called."""

    def __init__(self, ws: web.WebSocketResponse, max_bytes: int) -> None:
        self._reader: Any = ws._reader  # aiohttp's queue: see the module's docstring
        if self._reader is None:
            raise RuntimeError("the WebSocket is not prepared")
        ws._reader = self
        self.max_bytes = max_bytes
        self.armed = False
        self.frames = 0
        self.bytes = 0

    def arm(self) -> None:
        self.armed = True

    async def read(self) -> WSMessage:
        msg: WSMessage = await self._reader.read()
        if self.armed and msg.type in _DATA:
            self.frames += 1
            self.bytes += len(msg.data)
            if self.bytes > self.max_bytes:
                raise DrainCapped(f"{self.bytes} bytes after the close")
        return msg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)
