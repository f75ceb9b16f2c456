"""A complete stream, once: seal its WAV, find it in S3 by key and sha256, or upload it.

The key is a pure function of the stream's first record, and the WAV a pure function of its
records in offset order, so a stream read again after a restart lands on the same key with the
same bytes: a HEAD that finds our sha256 there writes nothing and answers ``already_archived``.
An object at the key with another sha256 (the stream's records changed, e.g. frames that came
after it was abandoned) is replaced: the newest archived record for a stream_sid describes the
object. Uploads are multipart from the spill file, with the metadata given at creation
(``workers.archiver.store``); stale incomplete uploads of the key are aborted first.

An unavailable object store is our fault, not the stream's: it is tried again, backing off, for
as long as it fails (the partition waits; its lag shows it). Never raises for that.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from topics.catalog import STREAM_ARCHIVED
from topics.events import CloudEvent, deterministic_id, format_time, make_event, parse_time
from workers.archiver.keys import safe_segment
from workers.archiver.store import RecordingStore, StoredObject, StoreUnavailable
from workers.retry import RetriesExhausted, RetryPolicy, retry_async
from workers.stream_archiver.assembly import Sealed, StreamAssembly
from workers.stream_archiver.partition import Ending

__all__ = ["CONTENT_TYPE", "SOURCE", "StreamArchive", "archived_event", "stream_key"]

log = logging.getLogger(__name__)
SOURCE = "exopipe/stream-archiver"
CONTENT_TYPE = "audio/wav"
KEY_PREFIX = "streams"


def stream_key(*, customer_id: str, app_id: str, started_at: str, stream_sid: str) -> str:
    """``streams/customer_id=<c>/app_id=<a>/date=<YYYY-MM-DD, UTC>/<stream_sid>.wav``."""
    day = parse_time(started_at).strftime("%Y-%m-%d")
    return (
        f"{KEY_PREFIX}/customer_id={safe_segment(customer_id)}/app_id={safe_segment(app_id)}"
        f"/date={day}/{safe_segment(stream_sid)}.wav"
    )


@dataclass
class StreamArchive:
    store: RecordingStore
    policy: RetryPolicy

    async def archive(self, ending: Ending) -> CloudEvent:
        """Seal, store (or find) and describe ``ending``'s WAV; the spill file stays (caller's)."""
        assembly = ending.assembly
        sealed = await asyncio.to_thread(assembly.seal)
        key = stream_key(
            customer_id=assembly.customer_id,
            app_id=assembly.app_id,
            started_at=assembly.started_at,
            stream_sid=assembly.stream_sid,
        )
        what = f"archiving stream {assembly.stream_sid} to {key}"
        while True:
            try:
                stored, already = await retry_async(
                    lambda _attempt: self._store_once(assembly, sealed, key), self.policy, what=what
                )
                break
            except RetriesExhausted as exc:
                if not isinstance(exc.last, StoreUnavailable):
                    raise
                log.warning("%s: object store unavailable, trying again: %s", what, exc.last)
                await asyncio.sleep(self.policy.max_delay)
        log.info(
            "stream %s %s: %s (%d bytes, %d ms, %s)",
            assembly.stream_sid, "already archived" if already else "archived", key,
            sealed.size, sealed.duration_ms, ending.reason,
        )  # fmt: skip
        archived_at = stored.last_modified if already and stored.last_modified else None
        return archived_event(
            assembly, ending, sealed, bucket=self.store.bucket, key=key,
            archived_at=archived_at or datetime.now(UTC), already=already,
        )  # fmt: skip

    async def _store_once(
        self, assembly: StreamAssembly, sealed: Sealed, key: str
    ) -> tuple[StoredObject, bool]:
        existing = await asyncio.to_thread(self.store.find, key)
        if existing is not None:
            if existing.metadata.get("sha256") == sealed.sha256:
                return existing, True
            log.warning(
                "%s holds another sha256 (%s) than stream %s now has (%s): replacing it",
                key, existing.metadata.get("sha256"), assembly.stream_sid, sealed.sha256,
            )  # fmt: skip
        stale = await asyncio.to_thread(self.store.abort_stale, key)
        if stale:
            log.warning("aborted %d stale multipart upload(s) of %s", stale, key)
        metadata = _metadata(assembly, sealed)
        await self.store.upload(
            sealed.path, key, size=sealed.size, content_type=CONTENT_TYPE, metadata=metadata
        )
        return StoredObject(key, sealed.size, CONTENT_TYPE, metadata), False


def _metadata(assembly: StreamAssembly, sealed: Sealed) -> dict[str, str]:
    values = {
        "sha256": sealed.sha256,
        "stream_sid": assembly.stream_sid,
        "call_sid": assembly.call_sid or "",
        "customer_id": assembly.customer_id,
        "app_id": assembly.app_id,
        "started_at": assembly.started_at,
        "encoding": sealed.audio.encoding,
        "sample_rate": str(sealed.audio.sample_rate),
    }
    return {name: quote(value, safe=":/@._-=+") for name, value in values.items()}


def archived_event(
    assembly: StreamAssembly,
    ending: Ending,
    sealed: Sealed,
    *,
    bucket: str,
    key: str,
    archived_at: datetime,
    already: bool,
) -> CloudEvent:
    """The ``exotel.stream.archived`` record; its id is the same for the same object."""
    counts = assembly.counts
    data: dict[str, Any] = {
        "stream_sid": assembly.stream_sid,
        "call_sid": assembly.call_sid,
        "customer_id": assembly.customer_id,
        "app_id": assembly.app_id,
        "bucket": bucket,
        "key": key,
        "uri": f"s3://{bucket}/{key}",
        "size_bytes": sealed.size,
        "sha256": sealed.sha256,
        "content_type": CONTENT_TYPE,
        "encoding": sealed.audio.encoding,
        "sample_rate": sealed.audio.sample_rate,
        "channels": sealed.channels,
        "duration_ms": sealed.duration_ms,
        "media_frames": counts.media_frames,
        "gaps": counts.gaps,
        "missing": counts.missing,
        "duplicates": counts.duplicates,
        "out_of_order": counts.out_of_order,
        "end_reason": ending.reason,
        "started_at": assembly.started_at,
        "ended_at": ending.ended_at,
        "archived_at": format_time(archived_at),
        "already_archived": already,
    }
    return make_event(
        STREAM_ARCHIVED,
        data,
        source=SOURCE,
        event_id=deterministic_id("stream-archived", bucket, key, sealed.sha256),
        customer_id=assembly.customer_id,
        app_id=assembly.app_id,
    )
