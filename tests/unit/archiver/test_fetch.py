"""The fetcher with httpx.MockTransport: connect-to-checked-address, limits, redirects, creds."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from workers.archiver.fetch import _BATCH_BYTES, _WINDOW_BYTES, Fetcher, RecordingRefused
from workers.archiver.ssrf import Guard, GuardPolicy, SsrfRefused
from workers.config import RecordingSettings
from workers.errors import RetryableError
from workers.secret_store import BasicCredentials, Secret

IP = "93.184.216.34"
OTHER_IP = "93.184.216.35"
URL = "https://recordings.exotel.com/acc/CA1.mp3?sig=s3cr3t"


async def resolve(host: str, port: int) -> list[str]:
    return {"recordings.exotel.com": [IP], "cdn.exotel.com": [OTHER_IP]}.get(host, ["10.1.2.3"])


def make_fetcher(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    max_bytes: int = 1024 * 1024,
    creds: dict[str, BasicCredentials] | None = None,
) -> tuple[Fetcher, httpx.AsyncClient]:
    policy = GuardPolicy.from_settings(
        RecordingSettings(hosts=("recordings.exotel.com", "cdn.exotel.com"))
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    fetcher = Fetcher(
        client,
        Guard(policy, resolver=resolve),
        credentials=lambda host: (creds or {}).get(host),
        max_bytes=max_bytes,
        max_redirects=2,
        total_timeout=5,
    )
    return fetcher, client


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        yield bytes([sent % 251]) * piece
        sent += piece


async def streamed(body: bytes | Iterator[bytes]) -> AsyncIterator[bytes]:
    """A body that arrives over time, as from a socket (bytes content is pre-read by httpx)."""
    for piece in [body] if isinstance(body, bytes) else body:
        yield piece


async def test_streams_to_the_checked_address_with_host_and_sni() -> None:
    seen: list[httpx.Request] = []
    body = b"".join(chunks(300_000))

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Content-Type": "audio/wav"}, content=streamed(body))

    fetcher, client = make_fetcher(handler)
    sink = io.BytesIO()
    async with client:
        result = await fetcher.download(URL, sink)
    assert sink.getvalue() == body
    assert result.size == len(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert result.content_type == "audio/wav"
    (request,) = seen
    assert request.url.host == IP
    assert request.url.query == b"sig=s3cr3t"
    assert request.headers["Host"] == "recordings.exotel.com"
    assert request.extensions["sni_hostname"] == "recordings.exotel.com"
    assert "Authorization" not in request.headers


async def test_default_content_type_is_audio_mpeg() -> None:
    fetcher, client = make_fetcher(lambda r: httpx.Response(200, content=streamed(b"abc")))
    async with client:
        result = await fetcher.download(URL, io.BytesIO())
    assert result.content_type == "audio/mpeg"


async def test_basic_credentials_go_to_their_host_only() -> None:
    creds = {"recordings.exotel.com": BasicCredentials("key", Secret("tok"))}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers["Host"] == "recordings.exotel.com":
            return httpx.Response(302, headers={"Location": "https://cdn.exotel.com/x.mp3"})
        return httpx.Response(200, content=streamed(b"ok"))

    fetcher, client = make_fetcher(handler, creds=creds)
    async with client:
        await fetcher.download(URL, io.BytesIO())
    first, second = seen
    assert first.headers["Authorization"] == httpx.BasicAuth("key", "tok")._auth_header
    assert second.url.host == OTHER_IP
    assert "Authorization" not in second.headers


async def test_redirect_to_loopback_is_rechecked_and_refused() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "http://127.0.0.1:6379/"})

    fetcher, client = make_fetcher(handler)
    async with client:
        with pytest.raises(SsrfRefused):
            await fetcher.download(URL, io.BytesIO())
    assert len(seen) == 1


async def test_redirect_to_name_resolving_private_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": "https://recordings.exotel.com.evil/"})

    fetcher, client = make_fetcher(handler)
    async with client:
        with pytest.raises(SsrfRefused):
            await fetcher.download(URL, io.BytesIO())


async def test_redirect_loop_stops_at_the_limit() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "/again.mp3"})

    fetcher, client = make_fetcher(handler)
    async with client:
        with pytest.raises(SsrfRefused, match="redirects"):
            await fetcher.download(URL, io.BytesIO())
    assert len(seen) == 3


async def test_too_large_by_content_length_reads_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(10**9)}, content=b"")

    fetcher, client = make_fetcher(handler)
    async with client:
        with pytest.raises(RecordingRefused) as info:
            await fetcher.download(URL, io.BytesIO())
    assert info.value.reason == "too_large"


async def test_too_large_counted_on_bytes_read_when_length_is_absent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=streamed(chunks(2 * 1024 * 1024)))  # streamed, no length

    fetcher, client = make_fetcher(handler, max_bytes=1024 * 1024)
    sink = io.BytesIO()
    async with client:
        with pytest.raises(RecordingRefused) as info:
            await fetcher.download(URL, sink)
    assert info.value.reason == "too_large"
    assert len(sink.getvalue()) <= 1024 * 1024


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, "not_found"), (410, "gone"), (403, "forbidden"), (401, "forbidden"), (400, "http_400")],
)
async def test_permanent_statuses(status: int, reason: str) -> None:
    fetcher, client = make_fetcher(lambda r: httpx.Response(status))
    async with client:
        with pytest.raises(RecordingRefused) as info:
            await fetcher.download(URL, io.BytesIO())
    assert info.value.reason == reason


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_transient_statuses(status: int) -> None:
    fetcher, client = make_fetcher(lambda r: httpx.Response(status, headers={"Retry-After": "2"}))
    async with client:
        with pytest.raises(RetryableError) as info:
            await fetcher.download(URL, io.BytesIO())
    assert info.value.retry_after == 2.0


async def test_connection_errors_are_retryable_and_hide_the_query() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fetcher, client = make_fetcher(handler)
    async with client:
        with pytest.raises(RetryableError) as info:
            await fetcher.download(URL, io.BytesIO())
    assert "s3cr3t" not in str(info.value)


class SlowSink(io.BytesIO):
    """A sink whose writes take time in the writer thread; records writes still running."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.wrote_while_closed = False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.running += 1
        time.sleep(0.002)
        self.running -= 1
        if self.closed:
            self.wrote_while_closed = True
            return 0
        return super().write(data)


async def test_a_cancelled_download_leaves_no_write_running_on_the_sink() -> None:
    async def slow_body() -> AsyncIterator[bytes]:
        for piece in chunks(64 * 1024 * 1024):
            await asyncio.sleep(0)
            yield piece

    fetcher, client = make_fetcher(
        lambda request: httpx.Response(200, content=slow_body()), max_bytes=10**9
    )
    sink = SlowSink()
    async with client:
        task = asyncio.create_task(fetcher.download(URL, sink))
        while sink.tell() < 2 * 1024 * 1024:  # noqa: ASYNC110 - the writer is a thread
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sink.running == 0
    written = sink.tell()
    await asyncio.sleep(0.05)
    assert sink.tell() == written


async def test_writes_overlap_the_download_and_keep_every_byte_in_order() -> None:
    body = b"".join(chunks(5 * 1024 * 1024 + 17, size=50_000))
    fetcher, client = make_fetcher(
        lambda request: httpx.Response(200, content=streamed(chunks(len(body), size=50_000))),
        max_bytes=10**9,
    )
    sink = io.BytesIO()
    async with client:
        result = await fetcher.download(URL, sink)
    assert sink.getvalue() == body
    assert result.sha256 == hashlib.sha256(body).hexdigest() and result.size == len(body)


class FullDisk(io.BytesIO):
    """A sink that fails once a megabyte is written, as a full disk does."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > 1024 * 1024:
            raise OSError(28, "No space left on device")
        return super().write(data)


async def test_a_failed_write_fails_the_download_without_hanging() -> None:
    fetcher, client = make_fetcher(
        lambda request: httpx.Response(200, content=streamed(chunks(16 * 1024 * 1024))),
        max_bytes=10**9,
    )
    async with client:
        with pytest.raises(OSError, match="No space left"):
            await asyncio.wait_for(fetcher.download(URL, FullDisk()), timeout=10)
    fetcher.close()


class HeldSink(io.BytesIO):
    """A sink whose first write waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.release.wait(timeout=10)
        return super().write(data)


async def test_a_slow_disk_stops_the_reading_within_the_window() -> None:
    read = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal read
        for piece in chunks(32 * 1024 * 1024):
            read += len(piece)
            yield piece

    body_size = 32 * 1024 * 1024
    fetcher, client = make_fetcher(
        lambda request: httpx.Response(200, content=counted()), max_bytes=10**9
    )
    sink = HeldSink()
    async with client:
        task = asyncio.create_task(fetcher.download(URL, sink))
        await asyncio.sleep(0.3)
        held_back = read
        sink.release.set()
        result = await task
    fetcher.close()
    # While the disk holds the writes, the body waits in at most the window and one batch.
    assert held_back <= _WINDOW_BYTES + 2 * _BATCH_BYTES
    assert result.size == body_size and sink.getvalue() == b"".join(chunks(body_size))
