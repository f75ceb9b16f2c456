"""The HTTP endpoints every faust worker serves for its operators: /healthz, /readyz, /metrics.

Started as a service of the faust ``Worker`` (so before table recovery, unlike faust's own web
server): liveness answers while a long recovery runs, readiness only once it is over. Off unless
``EXOPIPE_WORKER_HTTP_PORT`` is set (several workers on one machine would fight over one
default port). It serves no data and must never expose settings, secrets or record contents.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from mode import Service
from prometheus_client import REGISTRY, generate_latest

from workers import json_codec

__all__ = ["OpsHttp", "is_ready"]


def is_ready(app: Any) -> bool:
    """Started, not crashed, and table recovery completed (faust processes nothing before)."""
    if not app.started or app.crashed:
        return False
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    completed = getattr(recovery, "completed", None)
    return completed is None or completed.is_set()


class OpsHttp(Service):
    """A small aiohttp server beside a faust app."""

    def __init__(self, app: Any, host: str, port: int, **kwargs: Any) -> None:
        self.faust_app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        super().__init__(**kwargs)

    def web_app(self) -> web.Application:
        async def healthz(request: web.Request) -> web.Response:
            alive = not self.faust_app.crashed
            return _json({"status": "ok" if alive else "crashed"}, 200 if alive else 503)

        async def readyz(request: web.Request) -> web.Response:
            ready = is_ready(self.faust_app)
            return _json({"ready": ready}, 200 if ready else 503)

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(REGISTRY), content_type="text/plain", charset="utf-8"
            )

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        return app

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self.web_app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.log.info(
            "ops endpoints on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port
        )

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(status=status, body=json_codec.dumps(body), content_type="application/json")
