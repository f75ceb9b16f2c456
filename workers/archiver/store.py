"""The recording archive in S3: find an archived object, clear stale uploads, upload one file.

Why download to a temp file first, then upload: S3 takes object metadata only at
CreateMultipartUpload, and the sha256 we promise in it is known only after the last byte. So the
fetcher streams to a temp file while hashing (memory bounded by a chunk; disk bounded by
concurrency x max size), and only then this module creates the multipart upload with the full
metadata, uploads the parts and completes it. The other design (upload parts while downloading,
then a server-side copy to add metadata) writes every byte twice in the store and leaves a
metadata-less object visible between the two steps.

Parts go up several at once, from the worker's shared :class:`~workers.archiver.parts.PartBudget`:
at most ``parts_in_flight`` parts in memory across every upload of the process, each read from
the temp file straight into a reused buffer.

A recording of one part or less goes up with one PUT instead (:meth:`RecordingStore.put`): the
same object and metadata in one call instead of four, which is what many small recordings cost.

Guarantees: an object is visible only after CompleteMultipartUpload, which happens only when every
part is uploaded (a single PUT's object appears whole); any failure, and a cancellation, aborts the
upload once the parts in flight have ended. A crash (kill -9) cannot abort, so before a new upload
:meth:`RecordingStore.abort_stale` aborts every incomplete upload for the same key: the redelivered
event cleans up after the crashed attempt.

boto3 blocks: :meth:`RecordingStore.upload` is a coroutine that runs every call in a thread; the
other methods block, so call them through :meth:`RecordingStore.call`, never on the loop. Nothing
secret goes into metadata: the source URL is stored without query string or userinfo.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.archiver.parts import PartBody, PartBudget
from workers.errors import ConfigError, RetryableError

__all__ = ["MIN_PART_SIZE", "RecordingStore", "StoreUnavailable", "StoredObject"]

MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str
    metadata: dict[str, str]
    last_modified: datetime | None = None


class RecordingStore:
    """One bucket, one shared thread-safe boto3 client, one budget of parts in flight."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        part_size: int,
        parts_in_flight: int = 4,
        calls_in_flight: int = 8,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"EXOPIPE_RECORDING_PART_SIZE must be >= {MIN_PART_SIZE}")
        if parts_in_flight < 1:
            raise ConfigError("EXOPIPE_RECORDING_PARTS_IN_FLIGHT must be >= 1")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        self.budget = PartBudget(parts_in_flight, part_size)
        # The short calls (HEAD, PUT, list, create, complete, abort) on threads of their own, as
        # many as the recordings in hand: on the loop's default executor (cpu count + 4 threads)
        # 32 small recordings at once queued behind 6 threads. Not the default executor made
        # larger: its threads also join and hash the downloads' batches, and more of them kept
        # more malloc arenas (8 x 100 MiB peaked at 219 MiB with 20 threads, 185 with 6).
        self.calls = ThreadPoolExecutor(
            max_workers=max(1, calls_in_flight), thread_name_prefix="exopipe-s3"
        )

    async def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one blocking store call on the store's own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.calls, functools.partial(function, *args, **kwargs))

    def find(self, key: str) -> StoredObject | None:
        """The object at ``key`` if there is one, with its (lower-cased) metadata."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise _retryable("HEAD", key, exc) from exc
        except BotoCoreError as exc:
            raise _retryable("HEAD", key, exc) from exc
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            content_type=head.get("ContentType") or "application/octet-stream",
            metadata={k.lower(): v for k, v in head.get("Metadata", {}).items()},
            last_modified=head.get("LastModified"),
        )

    def abort_stale(self, key: str) -> int:
        """Abort every incomplete multipart upload of ``key``; return how many there were."""
        aborted = 0
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                for upload in page.get("Uploads", []):
                    if upload["Key"] != key:
                        continue
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                    )
                    aborted += 1
        except (ClientError, BotoCoreError) as exc:
            raise _retryable("abort stale uploads of", key, exc) from exc
        return aborted

    def put(self, path: Path, key: str, *, content_type: str, metadata: dict[str, str]) -> None:
        """Store the whole file at ``key`` with one PUT, metadata included (blocks: call it through
        :meth:`call`).

        For a recording of one part or less: a multipart upload of it costs four calls (list
        stale, create, one part, complete) where a PUT is one, and with many small recordings
        those calls, not the bytes, were most of the store's work (bench/README.md). A PUT is as
        atomic as a completed upload: the object appears whole with its metadata, or not at
        all, and leaves no incomplete upload when the worker dies halfway.
        """
        try:
            with path.open("rb") as body:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType=content_type,
                    Metadata=metadata,
                )
        except (ClientError, BotoCoreError) as exc:
            raise _retryable("PUT", key, exc) from exc

    async def upload(
        self,
        path: Path,
        key: str,
        *,
        size: int,
        content_type: str,
        metadata: dict[str, str],
    ) -> None:
        """Multipart-upload the ``size`` bytes of ``path`` to ``key``, several parts at once.

        Completes only after every part is in; on any failure, or when cancelled, it waits for
        the parts still in flight (they read ``path``), aborts the upload, then raises.
        """
        try:
            created = await self.call(
                self.client.create_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                Metadata=metadata,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _retryable("create upload of", key, exc) from exc
        upload_id = created["UploadId"]
        try:
            parts = await self._upload_parts(path, key, upload_id, size)
            await self.call(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException as exc:
            await _settle(asyncio.ensure_future(self.call(self._abort, key, upload_id)))
            if isinstance(exc, ClientError | BotoCoreError):
                raise _retryable("upload of", key, exc) from exc
            raise

    async def _upload_parts(
        self, path: Path, key: str, upload_id: str, size: int
    ) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        count = max(1, -(-size // self.part_size))  # an empty recording is one empty part
        in_flight: list[asyncio.Future[str]] = []
        fd = os.open(path, os.O_RDONLY)
        try:
            for number in range(1, count + 1):
                buffer = await self.budget.take()
                if any(f.done() and not f.cancelled() and f.exception() for f in in_flight):
                    self.budget.give(buffer)
                    break  # a part failed: send no more, the gather below raises it
                offset = (number - 1) * self.part_size
                future = loop.run_in_executor(
                    self.budget.executor,
                    self._upload_part,
                    fd,
                    buffer,
                    offset,
                    min(self.part_size, size - offset),
                    key,
                    upload_id,
                    number,
                )
                future.add_done_callback(lambda _f, b=buffer: self.budget.give(b))
                in_flight.append(future)
            etags = await asyncio.gather(*in_flight)
        except BaseException:
            await _settle(*in_flight)  # the parts read fd and buffers: let them end first
            raise
        finally:
            os.close(fd)
        return [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]

    def _upload_part(
        self,
        fd: int,
        buffer: bytearray,
        offset: int,
        length: int,
        key: str,
        upload_id: str,
        number: int,
    ) -> str:
        """Read one part into ``buffer`` (no copy) and upload it; runs on a budget thread."""
        view = memoryview(buffer)
        read = 0
        while read < length:
            got = os.preadv(fd, [view[read:length]], offset + read)
            if got == 0:
                raise OSError(f"temp file of {key} ended at {offset + read}, expected {length}")
            read += got
        # A full part goes as the buffer itself (one send, hashed in place); a short last part
        # as a view of the buffer's front.
        body: bytearray | PartBody = buffer if length == len(buffer) else PartBody(view[:length])
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return str(answer["ETag"])

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            # Left for abort_stale on the event's next attempt (or a bucket lifecycle rule).
            pass


async def _settle(*futures: asyncio.Future[Any]) -> None:
    """Wait until every future is done, also through a cancellation (raised again after)."""
    pending = {f for f in futures if not f.done()}
    cancelled = False
    while pending:
        try:
            _done, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    for future in futures:
        if not future.cancelled():
            future.exception()  # retrieved: the first one is already being raised
    if cancelled:
        raise asyncio.CancelledError


class StoreUnavailable(RetryableError):
    """Our object store failed a call: the recording is not at fault, so this never spends the
    recording's attempts (see :meth:`workers.archiver.archive.Archiver.handle`)."""


def _retryable(what: str, key: str, exc: Exception) -> RetryableError:
    return StoreUnavailable(f"S3 {what} {key}: {type(exc).__name__}: {exc}")
