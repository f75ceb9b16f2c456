"""A small aiohttp WebSocket server on 127.0.0.1 that keeps what a streaming client sent it.

It can refuse handshakes, close after some frames or answer each frame, so the client's retry,
early-close and voicebot paths can be driven without the real ingress. ``/dynamic`` is a dynamic
endpoint: it answers each GET with the next of ``dynamic_answers`` (status, body), else with
``{"url": dynamic_url}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from workers.json_codec import dumps, loads


@dataclass
class Handshake:
    raw_path: str
    headers: dict[str, str]
    status: int


@dataclass
class Receiver:
    """What arrived, and how to behave; ``base_url`` is ``ws://127.0.0.1:<port>``."""

    base_url: str = ""
    handshakes: list[Handshake] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    arrived_at: list[float] = field(default_factory=list)
    refuse: list[int] = field(default_factory=list)  # statuses for the next handshakes
    close_after: int | None = None
    close_code: int = 1000
    drop_after: int | None = None  # frames, then the TCP connection is cut (no close frame)
    reply: bool = False
    client_close_code: int | None = None
    connections_ended: int = 0
    dynamic_url: str = ""
    dynamic_answers: list[tuple[int, bytes]] = field(default_factory=list)
    resolutions: list[Handshake] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, done: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Until ``done()`` holds (it is checked at each frame and each connection's end)."""
        async with asyncio.timeout(timeout_s):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    def events(self) -> list[str]:
        return [frame["event"] for frame in self.frames]

    def media(self) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["event"] == "media"]

    async def resolve(self, request: web.Request) -> web.Response:
        status, body = (
            self.dynamic_answers.pop(0)
            if self.dynamic_answers
            else (200, dumps({"url": self.dynamic_url}))
        )
        self.resolutions.append(Handshake(request.raw_path, dict(request.headers), status))
        return web.Response(status=status, body=body, content_type="application/json")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        status = self.refuse.pop(0) if self.refuse else 101
        self.handshakes.append(Handshake(request.raw_path, dict(request.headers), status))
        if status != 101:
            return web.Response(status=status, text="refused")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                self.frames.append(loads(message.data))
                self.arrived_at.append(time.monotonic())
                self.changed.set()
                if self.reply:
                    await ws.send_str('{"event": "mark", "mark": {"name": "ack"}}')
                if self.drop_after is not None and len(self.frames) >= self.drop_after:
                    assert request.transport is not None
                    request.transport.abort()
                    break
                if self.close_after is not None and len(self.frames) >= self.close_after:
                    await ws.close(code=self.close_code, message=b"enough")
                    break
            if self.client_close_code is None and ws.close_code is not None:
                self.client_close_code = ws.close_code
        finally:
            self.connections_ended += 1
            self.changed.set()
        return ws


@asynccontextmanager
async def running_receiver(
    path: str = "/v1/{customer_id}/{app_id}/stream",
) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_get(path, receiver.handle)
    app.router.add_get("/dynamic", receiver.resolve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.base_url = f"ws://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
