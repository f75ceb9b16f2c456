"""Stream one recording through the SSRF guard into a file, hashing as the bytes arrive.

Memory stays bounded (one httpx chunk plus the hashing thread's window, 2 MiB) whatever the
recording's size; the size limit counts the bytes actually read, not what Content-Length
claims. Redirects are followed by hand, each hop re-checked by the guard, at most
``max_redirects`` of them. Basic credentials for a host come from the secret store and go only
to that host.

HTTP outcomes map to the error taxonomy here: 404/410/401/403 and other 4xx, too large and
refused URLs are permanent; 408/429/5xx, timeouts and broken connections are retryable.

This module must never log a URL's query string (pre-signed URLs carry their signature there) or
a credential, and never hold a whole recording in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin

import httpx

from workers.archiver.keys import source_url
from workers.archiver.ssrf import Guard, SsrfRefused
from workers.errors import PermanentError, RetryableError
from workers.secret_store import BasicCredentials

__all__ = ["DEFAULT_CONTENT_TYPE", "Downloaded", "Fetcher", "LengthHook", "RecordingRefused"]

DEFAULT_CONTENT_TYPE = "audio/mpeg"
# Chunks are handed to the hashing thread this many bytes at a time, and the loop reads on
# while up to _WINDOW_BYTES wait for it.
_BATCH_BYTES = 512 * 1024
_WINDOW_BYTES = 2 * 1024 * 1024
# Told the final response's Content-Length (None: not declared) before its body is read.
LengthHook = Callable[[int | None], None]
_PERMANENT = {401: "forbidden", 403: "forbidden", 404: "not_found", 410: "gone"}


class RecordingRefused(PermanentError):
    """The host answered in a way retrying will not change; ``reason`` is the record's code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str
    content_type: str
    final_url: str


class _HashingWriter:
    """Hashes and writes the body on a thread of its own while the loop receives the rest.

    The loop hands over batches of chunks (``_BATCH_BYTES``) through a queue and goes on
    reading; it waits only while more than ``_WINDOW_BYTES`` are queued. Memory per download
    is bounded by that window, one batch and its joined copy. The thread takes the batches in
    order, so the digest and the file see the bytes as they came.

    Why not one ``to_thread`` per batch, as before: the loop then waited for each batch
    before handing over the next, so the two took turns instead of running side by side
    (100 MiB from the double, medians of alternating runs: 0.20 s that way, 0.17 s with a
    queue; bench/README.md, archiver, point 11).
    """

    def __init__(self, sink: BinaryIO, threads: ThreadPoolExecutor) -> None:
        self._sink = sink
        self._threads = threads
        self._digest = hashlib.sha256()
        self._queue: queue.SimpleQueue[tuple[list[bytes], int] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _queued and _space, shared with the thread
        self._queued = 0
        self._space: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._batch: list[bytes] = []
        self._batched = 0
        self._job: asyncio.Future[None] | None = None
        self._ended = False  # the end of the queue is sent
        self._loop = asyncio.get_running_loop()

    def _drain(self) -> None:
        """On the thread: hash and write each batch until the end of the queue. After a
        failure it keeps taking batches (dropping them) so the loop never waits for room."""
        while (item := self._queue.get()) is not None:
            batch, size = item
            if self._error is None:
                try:
                    # One update and one write a batch: each call gives up the GIL and has
                    # to take it back from the loop (and, with many small recordings at
                    # once, from the other downloads' threads).
                    data = batch[0] if len(batch) == 1 else b"".join(batch)
                    self._digest.update(data)
                    self._sink.write(data)
                except BaseException as exc:  # handed to the loop, which raises it
                    self._error = exc
            with self._lock:
                self._queued -= size
                space = self._space
                if space is None or self._queued > _WINDOW_BYTES // 2:
                    continue
                self._space = None
            self._loop.call_soon_threadsafe(_wake, space)

    async def add(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= _BATCH_BYTES:
            await self._hand_over()

    async def _hand_over(self) -> None:
        if self._error is not None:
            raise self._error
        batch, size = self._batch, self._batched
        self._batch, self._batched = [], 0
        if self._job is None:
            self._job = self._loop.run_in_executor(self._threads, self._drain)
        space = None
        with self._lock:
            self._queued += size
            if self._queued > _WINDOW_BYTES:
                space = self._space = self._loop.create_future()
        self._queue.put((batch, size))
        if space is not None:
            await space

    async def flush(self) -> None:
        """Hand over what is left and wait until every batch is hashed and written."""
        if self._batch:
            await self._hand_over()
        if self._job is None:
            return
        self._end()
        await asyncio.shield(self._job)  # cancelled: settle() waits for the thread
        if self._error is not None:
            raise self._error

    async def settle(self) -> None:
        """Wait for the thread to end (also when cancelled), so the caller may close the
        sink; its error, if any, is left to the error already being raised."""
        job = self._job
        if job is None:
            return
        self._end()
        cancelled = False
        while not job.done():
            try:
                await asyncio.wait([job])
            except asyncio.CancelledError:
                cancelled = True
        if not job.cancelled():
            job.exception()
        if cancelled:
            raise asyncio.CancelledError

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put(None)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Fetcher:
    """Downloads recordings with one shared ``httpx.AsyncClient`` (the app owns and closes it).

    Each download hashes and writes on a thread of the fetcher's own, one per download in
    flight (``downloads_at_once``; a download beyond them waits for a thread with its window
    full). Call :meth:`close` when done.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        guard: Guard,
        *,
        credentials: Callable[[str], BasicCredentials | None],
        max_bytes: int,
        max_redirects: int,
        total_timeout: float,
        downloads_at_once: int = 8,
    ) -> None:
        self._client = client
        self._guard = guard
        self._credentials = credentials
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._total_timeout = total_timeout
        self._threads = ThreadPoolExecutor(
            max_workers=max(1, downloads_at_once), thread_name_prefix="exopipe-hash"
        )

    def close(self) -> None:
        """Let the hashing threads go (after the downloads in flight have ended)."""
        self._threads.shutdown(wait=True)

    async def download(
        self, url: str, sink: BinaryIO, *, on_length: LengthHook | None = None
    ) -> Downloaded:
        """Write the recording at ``url`` to ``sink``; raise Permanent/RetryableError otherwise.

        ``on_length`` hears the final response's Content-Length (``None`` when it declares
        none) before its body is read, so the caller can start work that depends on the size.
        """
        try:
            async with asyncio.timeout(self._total_timeout):
                return await self._follow(url, sink, on_length)
        except TimeoutError:
            raise RetryableError(
                f"download of {source_url(url)} exceeded {self._total_timeout}s"
            ) from None

    async def _follow(self, url: str, sink: BinaryIO, on_length: LengthHook | None) -> Downloaded:
        current = url
        for _hop in range(self._max_redirects + 1):
            target = await self._guard.check(current)
            request = self._client.build_request(
                "GET",
                target.connect_url,
                # identity: the archive keeps the bytes Exotel stores, never a re-encoding.
                headers={
                    "Host": target.host_header,
                    "Accept": "*/*",
                    "Accept-Encoding": "identity",
                },
                extensions=target.extensions,
            )
            creds = self._credentials(target.host)
            auth = None if creds is None else (creds.username, creds.password.reveal())
            try:
                response = await self._client.send(
                    request, auth=auth, stream=True, follow_redirects=False
                )
            except httpx.TransportError as exc:
                raise RetryableError(f"GET {source_url(current)}: {type(exc).__name__}") from exc
            try:
                if response.is_redirect:
                    location = response.headers.get("Location")
                    if not location:
                        raise RecordingRefused("bad_redirect", "redirect without Location")
                    current = urljoin(current, location)
                    continue
                _raise_for_status(response, current)
                return await self._read(response, sink, current, on_length)
            finally:
                await response.aclose()
        raise SsrfRefused(f"more than {self._max_redirects} redirects")

    async def _read(
        self, response: httpx.Response, sink: BinaryIO, url: str, on_length: LengthHook | None
    ) -> Downloaded:
        declared = _content_length(response)
        if declared is not None and declared > self._max_bytes:
            raise RecordingRefused(
                "too_large", f"Content-Length {declared} exceeds {self._max_bytes} bytes"
            )
        if on_length is not None:
            on_length(declared)
        writer = _HashingWriter(sink, self._threads)
        size = 0
        try:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self._max_bytes:
                    raise RecordingRefused(
                        "too_large", f"body exceeds {self._max_bytes} bytes (read {size})"
                    )
                await writer.add(chunk)
            await writer.flush()
        except httpx.TransportError as exc:
            raise RetryableError(
                f"GET {source_url(url)} broke after {size} bytes: {type(exc).__name__}"
            ) from exc
        finally:
            await writer.settle()  # no write may still run when the caller closes the sink
        if declared is not None and size != declared:
            raise RetryableError(f"GET {source_url(url)}: {size} bytes, Content-Length {declared}")
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Downloaded(
            size=size,
            sha256=writer.hexdigest(),
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            final_url=url,
        )


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("Content-Length")
    if raw is None or "Content-Encoding" in response.headers:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status == 200:
        return
    where = f"GET {source_url(url)} -> {status}"
    if status in _PERMANENT:
        raise RecordingRefused(_PERMANENT[status], where)
    if status in {408, 425, 429} or status >= 500:
        raise RetryableError(where, retry_after=_retry_after(response))
    raise RecordingRefused(f"http_{status}", where)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
