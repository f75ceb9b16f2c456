"""The asyncio transport under httpx: plain and TLS requests, verification, timeouts, reuse."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from workers.asyncio_transport import AsyncioTransport, transport_for

LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"peer": request.transport.get_extra_info("peername")[1]})


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.json_response({})


BIG = bytes(range(256)) * 4096 * 4  # 4 MiB


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=BIG)


async def _close(request: web.Request) -> web.Response:
    # Answer, then close the keep-alive connection from the server side.
    response = web.json_response({"closing": True})
    response.force_close()
    return response


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate")
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    return crt, key


async def _serve(
    ssl_context: ssl.SSLContext | None = None, keepalive_timeout: float = 75.0
) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/hello", _hello)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/close", _close)
    app.router.add_get("/big", _big)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def plain() -> AsyncIterator[int]:
    runner, port = await _serve()
    yield port
    await runner.cleanup()


async def test_plain_requests_reuse_their_keep_alive_connection(plain: int) -> None:
    async with httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client:
        first = (await client.get(f"http://127.0.0.1:{plain}/hello")).json()["peer"]
        second = (await client.get(f"http://127.0.0.1:{plain}/hello")).json()["peer"]
    assert first == second  # the same client port: one connection, reused


async def test_a_connection_the_server_closed_is_not_reused(plain: int) -> None:
    async with httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client:
        assert (await client.get(f"http://127.0.0.1:{plain}/close")).json() == {"closing": True}
        await asyncio.sleep(0.05)
        # The closed connection counts as readable, so a new one is opened: no protocol error.
        for _ in range(3):
            assert (await client.get(f"http://127.0.0.1:{plain}/hello")).status_code == 200


async def test_an_idle_connection_the_server_dropped_is_not_reused() -> None:
    # The server closes idle keep-alive connections after 50 ms without a word; the pool must
    # see that (the connection is readable: EOF) and open a new one rather than fail on it.
    runner, port = await _serve(keepalive_timeout=0.05)
    try:
        async with httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client:
            first = (await client.get(f"http://127.0.0.1:{port}/hello")).json()["peer"]
            await asyncio.sleep(0.3)
            second = (await client.get(f"http://127.0.0.1:{port}/hello")).json()["peer"]
        assert first != second
    finally:
        await runner.cleanup()


async def test_read_and_connect_timeouts_are_httpx_timeouts(plain: int) -> None:
    timeout = httpx.Timeout(0.2)
    async with httpx.AsyncClient(
        transport=AsyncioTransport(limits=LIMITS), timeout=timeout
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://127.0.0.1:{plain}/slow")
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/hello")  # nothing listens on port 1


async def test_tls_verifies_the_certificate_and_host_name(cert: tuple[Path, Path]) -> None:
    crt, key = cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    runner, port = await _serve(server_ctx)
    trusted = ssl.create_default_context(cafile=str(crt))
    try:
        transport = AsyncioTransport(limits=LIMITS, verify=trusted)
        async with httpx.AsyncClient(transport=transport) as client:
            first = await client.get(f"https://localhost:{port}/hello")
            second = await client.get(f"https://localhost:{port}/hello")
            assert first.status_code == 200 and first.json() == second.json()
            # The certificate names localhost, not 127.0.0.1: refused.
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://127.0.0.1:{port}/hello")
        # Not signed by a CA the default context trusts: refused.
        async with httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://localhost:{port}/hello")
    finally:
        await runner.cleanup()


def test_a_proxy_in_the_environment_keeps_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(transport_for("https://api.example.com/v2", LIMITS), AsyncioTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    assert transport_for("https://api.example.com/v2", LIMITS) is None
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert isinstance(transport_for("https://api.example.com/v2", LIMITS), AsyncioTransport)


async def test_a_read_size_gives_larger_chunks_of_the_same_body(plain: int) -> None:
    async def chunks(read_size: int) -> list[bytes]:
        transport = AsyncioTransport(limits=LIMITS, read_size=read_size)
        async with httpx.AsyncClient(transport=transport) as client:
            async with client.stream("GET", f"http://127.0.0.1:{plain}/big") as response:
                return [chunk async for chunk in response.aiter_raw()]

    default, large = await chunks(0), await chunks(1024 * 1024)
    assert b"".join(default) == BIG and b"".join(large) == BIG
    assert max(len(c) for c in default) <= 64 * 1024
    assert max(len(c) for c in large) > 64 * 1024
