"""The aiohttp application of the ingress: routes, ops endpoints, start-up and shutdown.

Clients (the producer, the spool) are created once here and closed at cleanup, which aiohttp runs
after in-flight requests finished; live streams are closed (1001) at shutdown, before that. At
start-up, streams a killed predecessor left open get their closed record before the ingress
serves (:mod:`stream_restart`). The
access log never shows query strings: they carry secrets; nor does the error aiohttp logs for a
request its parser refuses (it quotes the request's text).
"""

from __future__ import annotations

import logging
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from workers import json_codec
from workers.config import Settings
from workers.errors import ConfigError
from workers.ingress.auth import SenderAllowlist
from workers.ingress.limits import RateLimiter
from workers.ingress.metrics import IngressMetrics
from workers.ingress.sink import ProducerFactory, Sink
from workers.ingress.spool import Spool
from workers.ingress.stream import STREAM_ROUTE, StreamRegistry, handle_stream
from workers.ingress.stream_endpoint import add_stream_endpoint
from workers.ingress.stream_journal import StreamJournal
from workers.ingress.stream_restart import close_left_streams
from workers.ingress.webhook import Ingress, handle_webhook
from workers.kafka import new_producer
from workers.secret_store import SecretStore

__all__ = [
    "INGRESS",
    "OPENAPI_PATH",
    "STREAMS",
    "ParserErrorRedactor",
    "PathOnlyAccessLogger",
    "build_app",
]

INGRESS = web.AppKey("ingress", Ingress)
STREAMS = web.AppKey("streams", StreamRegistry)
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
WEBHOOK_ROUTE = "/v1/{customer_id}/{app_id}/{kind}"
# The open-streams journal: in the spool's directory, under its lock.
JOURNAL_DIR = "open-streams"


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Method, path (no query: the token lives there), status and time."""

    @property
    def enabled(self) -> bool:
        # aiohttp asks once per connection; the base class says yes even when INFO is off, and
        # every request then built a line that was thrown away.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


class ParserErrorRedactor(logging.Filter):
    """Keeps only the error's name when aiohttp logs a request its HTTP parser refused.

    The parser's message quotes the first 100 bytes of the line it refused (a request line or a
    header over 8190 bytes): the ``token`` parameter, or a Basic header's credentials.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            said = record.getMessage()
            record.msg = "%s: %s (HTTP %d; the request's text is not logged)"
            record.args = (said, type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
        return True


def _redact_parser_errors() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ParserErrorRedactor) for f in server_log.filters):
        server_log.addFilter(ParserErrorRedactor())


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"EXOPIPE_INGRESS_LOCAL_TIMEZONE: unknown zone {name!r}") from None


def build_app(
    settings: Settings,
    secrets: SecretStore,
    *,
    producer_factory: ProducerFactory | None = None,
) -> web.Application:
    """The ingress app; the sink starts with the app and closes at cleanup."""
    _redact_parser_errors()
    cfg = settings.ingress
    metrics = IngressMetrics()
    # 256 KiB batches: a stream's media frame is ~4.5 KB and aiokafka's default (16 KiB) held 3 of
    # them, so frames waited for room in a full batch.
    factory = producer_factory or (
        lambda: new_producer(
            settings, client_id="exopipe-ingress", request_timeout_ms=10_000, max_batch_size=262_144
        )
    )
    sink = Sink(
        Spool(cfg.spool_dir, cfg.spool_max_bytes),
        factory,
        metrics,
        produce_timeout_s=cfg.produce_timeout_s,
    )
    ingress = Ingress(
        settings=settings,
        secrets=secrets,
        sink=sink,
        metrics=metrics,
        limiter=RateLimiter(cfg.rate_limit_per_s, cfg.rate_limit_burst),
        allowlist=SenderAllowlist(cfg.allowed_cidrs),
        zone=_zone(cfg.local_timezone),
    )
    streams = StreamRegistry(
        cfg.stream_max_per_tenant,
        cfg.stream_max_open,
        metrics,
        StreamJournal(cfg.spool_dir / JOURNAL_DIR),
    )
    app = web.Application()
    app[INGRESS] = ingress
    app[STREAMS] = streams

    async def webhook(request: web.Request) -> web.Response:
        return await handle_webhook(request, ingress)

    async def stream(request: web.Request) -> web.StreamResponse:
        return await handle_stream(request, ingress, streams)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, dumps=_dumps)

    async def readyz(request: web.Request) -> web.Response:
        body = {
            "ready": sink.ready,
            "spool_depth": sink.depth,
            "spool_full": sink.spool_full,
        }
        return web.json_response(body, status=200 if sink.ready else 503, dumps=_dumps)

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")

    # Before the webhook route, which would take "stream" for a kind.
    app.router.add_get(STREAM_ROUTE, stream)
    add_stream_endpoint(app, ingress)
    app.router.add_post(WEBHOOK_ROUTE, webhook)
    app.router.add_get(WEBHOOK_ROUTE, webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi)

    async def start_sink(_: web.Application) -> None:
        await sink.start()  # locks the spool's directory, and so the journal in it
        await close_left_streams(ingress, streams.journal)

    async def close_sink(_: web.Application) -> None:
        # Streams first: their closed records go through the sink.
        await streams.wait_ended(cfg.shutdown_timeout_s)
        await sink.close(cfg.shutdown_timeout_s)

    async def close_streams(_: web.Application) -> None:
        # Before aiohttp waits for handlers: each stream writes its closed record, then the sink
        # closes (cleanup runs after every handler has returned).
        await streams.shutdown()

    app.on_startup.append(start_sink)
    app.on_shutdown.append(close_streams)
    app.on_cleanup.append(close_sink)
    return app


def _dumps(value: object) -> str:
    return json_codec.dumps(value).decode()
