"""The recording archive in S3: find an archived object, clear stale uploads, upload one file.

Why download to a temp file first, then upload: S3 takes object metadata only at
CreateMultipartUpload, and the sha256 we promise in it is known only after the last byte. So the
fetcher streams to a temp file while hashing (memory bounded by a chunk; disk bounded by
concurrency x max size), and only then this module creates the multipart upload with the full
metadata, uploads the parts and completes it. The other design (upload parts while downloading,
then a server-side copy to add metadata) writes every byte twice in the store and leaves a
metadata-less object visible between the two steps.

Guarantees: an object is visible only after CompleteMultipartUpload, which happens only when every
part is uploaded; any failure aborts the upload. A crash (kill -9) cannot abort, so before a new
upload :meth:`RecordingStore.abort_stale` aborts every incomplete upload for the same key: the
redelivered event cleans up after the crashed attempt.

Every function here blocks (boto3): call them through ``asyncio.to_thread``, never on the loop.
Nothing secret goes into metadata: the source URL is stored without query string or userinfo.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.errors import ConfigError, RetryableError

__all__ = ["MIN_PART_SIZE", "RecordingStore", "StoreUnavailable", "StoredObject", "UploadCancelled"]

MIN_PART_SIZE = 5 * 1024 * 1024


class UploadCancelled(Exception):
    """The worker is stopping; the upload was aborted and the event will be redelivered."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str
    metadata: dict[str, str]
    last_modified: datetime | None = None


class RecordingStore:
    """One bucket, one shared thread-safe boto3 client."""

    def __init__(self, client: Any, bucket: str, part_size: int) -> None:
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"EXOPIPE_RECORDING_PART_SIZE must be >= {MIN_PART_SIZE}")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size

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

    def upload(
        self,
        path: Path,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        cancelled: threading.Event | None = None,
    ) -> None:
        """Multipart-upload ``path`` to ``key``: complete only after every part, else abort."""
        try:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, Metadata=metadata
            )
        except (ClientError, BotoCoreError) as exc:
            raise _retryable("create upload of", key, exc) from exc
        upload_id = created["UploadId"]
        try:
            parts = self._upload_parts(path, key, upload_id, cancelled)
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException as exc:
            self._abort(key, upload_id)
            if isinstance(exc, ClientError | BotoCoreError):
                raise _retryable("upload of", key, exc) from exc
            raise

    def _upload_parts(
        self, path: Path, key: str, upload_id: str, cancelled: threading.Event | None
    ) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        with path.open("rb") as source:
            number = 1
            while True:
                # One part in memory at a time: the per-upload memory bound is part_size.
                body = source.read(self.part_size)
                if not body and number > 1:
                    break
                if cancelled is not None and cancelled.is_set():
                    raise UploadCancelled(key)
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                number += 1
                if len(body) < self.part_size:
                    break
        return parts

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            # Left for abort_stale on the event's next attempt (or a bucket lifecycle rule).
            pass


class StoreUnavailable(RetryableError):
    """Our object store failed a call: the recording is not at fault, so this never spends the
    recording's attempts (see :meth:`workers.archiver.archive.Archiver.handle`)."""


def _retryable(what: str, key: str, exc: Exception) -> RetryableError:
    return StoreUnavailable(f"S3 {what} {key}: {type(exc).__name__}: {exc}")
