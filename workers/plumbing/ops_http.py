"""The HTTP endpoints every worker serves for its operators: /healthz, /readyz and /metrics.

A faust worker starts them as a service of its ``Worker`` (so before table recovery, unlike
faust's own web server); the enricher with :func:`serve_ops`. Liveness answers while a long
recovery runs, readiness only once it is over. Off unless
``EXOPIPE_WORKER_HTTP_PORT`` is set (several workers on one machine would fight over one
default port). It serves no data and must never expose settings, secrets or record contents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from mode import Service
from prometheus_client import REGISTRY, generate_latest

from workers import json_codec

__all__ = ["OpsHttp", "is_ready", "ops_app", "serve_ops"]


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
        return ops_app(
            alive=lambda: not self.faust_app.crashed, ready=lambda: is_ready(self.faust_app)
        )

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


def ops_app(alive: Callable[[], bool], ready: Callable[[], bool]) -> web.Application:
    """/healthz (``alive``), /readyz (``ready``), /metrics (this process's Prometheus registry)."""

    async def healthz(request: web.Request) -> web.Response:
        ok = alive()
        return _json({"status": "ok" if ok else "crashed"}, 200 if ok else 503)

    async def readyz(request: web.Request) -> web.Response:
        ok = ready()
        return _json({"ready": ok}, 200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), content_type="text/plain", charset="utf-8"
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_ops(
    host: str, port: int, *, alive: Callable[[], bool], ready: Callable[[], bool]
) -> web.AppRunner:
    """Serve :func:`ops_app` until the returned runner's ``cleanup()``."""
    runner = web.AppRunner(ops_app(alive, ready), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logging.getLogger(__name__).info(
        "ops endpoints on http://%s:%d (/healthz /readyz /metrics)", host, port
    )
    return runner


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(status=status, body=json_codec.dumps(body), content_type="application/json")
