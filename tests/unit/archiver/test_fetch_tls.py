"""The fetcher over the asyncio transport it runs on: it connects to the address the SSRF guard
checked and still verifies TLS against the recording host's name (SNI and certificate)."""

from __future__ import annotations

import io
import ssl
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tests.unit.workers.test_asyncio_transport import cert
from workers.archiver.fetch import Fetcher
from workers.archiver.ssrf import Guard, GuardPolicy
from workers.asyncio_transport import AsyncioTransport
from workers.config import RecordingSettings
from workers.errors import RetryableError

cert = cert  # the throwaway certificate for localhost (a fixture)  # noqa: PLW0127
BODY = b"ID3" + bytes(range(256)) * 64


async def _recording(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="audio/mpeg")


async def fetch_over_tls(crt: Path, key: Path, trust: ssl.SSLContext | None = None) -> bytes:
    """Serve a recording over TLS on 127.0.0.1; fetch https://localhost/... resolved to it.

    ``trust`` is the client's CA context (the throwaway certificate's by default)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    app = web.Application()
    app.router.add_get("/acc/CA1.mp3", _recording)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = GuardPolicy.from_settings(
        RecordingSettings(allow_insecure=True, hosts=("localhost",), ports=(str(port),))
    )
    limits = httpx.Limits(max_connections=10)
    verify = trust or ssl.create_default_context(cafile=crt)
    transport = AsyncioTransport(limits=limits, verify=verify)
    sink = io.BytesIO()
    try:
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            fetcher = Fetcher(
                client, Guard(policy, resolver=resolve), credentials=lambda host: None,
                max_bytes=10**6, max_redirects=0, total_timeout=10,
            )  # fmt: skip
            await fetcher.download(f"https://localhost:{port}/acc/CA1.mp3", sink)
    finally:
        await runner.cleanup()
    return sink.getvalue()


async def test_connects_to_the_checked_address_and_verifies_the_host_name(
    cert: tuple[Path, Path],
) -> None:
    crt, key = cert
    # The connection goes to 127.0.0.1, which the certificate does not name: it verifies
    # only because TLS is checked against the URL's host (SNI and host name), localhost.
    assert await fetch_over_tls(crt, key) == BODY


async def test_a_certificate_from_an_untrusted_issuer_is_refused(cert: tuple[Path, Path]) -> None:
    crt, key = cert
    with pytest.raises(RetryableError):
        await fetch_over_tls(crt, key, trust=ssl.create_default_context())
