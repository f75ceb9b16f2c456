"""Run the double inside the current event loop on a free loopback port.

For tests of other components (the settings worker, the archiver) that want a real HTTP double
without a subprocess: ``async with DoubleServer() as double: double.base_url``.
"""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from workers.exotel_double import API_PREFIX
from workers.exotel_double.app import create_app
from workers.exotel_double.state import DoubleState

__all__ = ["DoubleServer"]


class DoubleServer:
    """The double on ``host``:``port`` (0 picks a free port) until the context exits."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.state = DoubleState()
        self._runner = web.AppRunner(create_app(self.state), access_log=None)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    async def start(self) -> DoubleServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> DoubleServer:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
