"""One recording_ready event, end to end: always returns exactly one :class:`Outcome`.

Order per event: parse and validate; skip when the app's ``recording_enabled`` is false; HEAD the
deterministic key (an object carrying our sha256 metadata means it is archived already: nothing is
downloaded or written again); download to a temp file while hashing; then a recording of one part or
less goes up with one PUT carrying the full metadata, and a larger one is multipart-uploaded with
it, once the stale multipart uploads of its key (left by a crashed attempt, and listed while it
downloads) are aborted.
Transient failures repeat the whole attempt through ``workers.retry``; permanent ones become a
``failed`` outcome at once. When the attempts run out on our own object store being unavailable, the
event is not dead-lettered: the recording is not at fault, so the worker keeps trying (its partition
waits, and its lag shows it) until the store is back.

This module must never raise for a bad event or a failed archive (it returns the ``failed``
outcome instead), and never let a temp file outlive its attempt.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from topics.catalog import WEBHOOK_RECORDING_READY
from topics.events import InvalidEvent, parse_event
from topics.schemas import SchemaViolation
from workers import json_codec
from workers.archiver import outcomes
from workers.archiver.fetch import Fetcher
from workers.archiver.keys import object_key, source_url
from workers.archiver.outcomes import Outcome
from workers.archiver.store import RecordingStore, StoredObject, StoreUnavailable
from workers.errors import PermanentError
from workers.retry import RetriesExhausted, RetryPolicy, retry_async

__all__ = ["Archiver", "EnabledLookup"]

log = logging.getLogger(__name__)

# (customer_id, app_id) -> the app's recording_enabled as last seen, None when unknown.
EnabledLookup = Callable[[str, str], bool | None]


@dataclass
class Archiver:
    fetcher: Fetcher
    store: RecordingStore
    policy: RetryPolicy
    key_prefix: str = "recordings"
    temp_dir: Path | None = None
    recording_enabled: EnabledLookup = lambda customer_id, app_id: None  # noqa: E731

    async def handle(self, value: bytes) -> Outcome:
        try:
            event = parse_event(value, WEBHOOK_RECORDING_READY)
        except (InvalidEvent, SchemaViolation) as exc:
            return outcomes.failed(
                _original(value), outcome="failed", reason="bad_event", detail=str(exc),
                permanent=True, attempts=0,
            )  # fmt: skip
        original = event.to_dict()
        data = event.data
        if self.recording_enabled(data["customer_id"], data["app_id"]) is False:
            return outcomes.failed(
                original, outcome="skipped", reason="recording_disabled",
                detail="exotel.settings.state says recording_enabled is false for this app",
                permanent=True, attempts=0,
            )  # fmt: skip
        try:
            key = object_key(
                prefix=self.key_prefix,
                customer_id=data["customer_id"],
                app_id=data["app_id"],
                call_sid=data["call_sid"],
                timestamp=data["timestamp"],
                url=data["recording_url"],
            )
        except ValueError as exc:
            return outcomes.failed(
                original, outcome="failed", reason="bad_event", detail=str(exc),
                permanent=True, attempts=0,
            )  # fmt: skip
        attempts = 0
        spent = 0  # attempts of earlier rounds that ended on an unavailable store

        async def attempt(number: int) -> Outcome:
            nonlocal attempts
            attempts = spent + number
            return await self._archive_once(event.id, data, key)

        what = f"archiving {data['call_sid']} from {source_url(data['recording_url'])}"
        try:
            while True:
                try:
                    return await retry_async(attempt, self.policy, what=what)
                except RetriesExhausted as exc:
                    if not isinstance(exc.last, StoreUnavailable):
                        raise
                    # Dead-lettering here would lose a good recording to our own outage.
                    spent = attempts
                    log.warning("%s: object store unavailable, trying again: %s", what, exc.last)
                    await asyncio.sleep(self.policy.max_delay)
        except PermanentError as exc:
            reason = getattr(exc, "reason", "permanent")
            log.warning("%s failed permanently (%s): %s", what, reason, exc)
            return outcomes.failed(
                original, outcome="failed", reason=reason, detail=str(exc),
                permanent=True, attempts=attempts,
            )  # fmt: skip
        except RetriesExhausted as exc:
            log.warning("%s gave up: %s", what, exc)
            return outcomes.failed(
                original, outcome="failed", reason="retries_exhausted", detail=str(exc.last),
                permanent=False, attempts=attempts,
            )  # fmt: skip

    async def _archive_once(self, event_id: str, data: dict[str, Any], key: str) -> Outcome:
        existing = await self._store_call(self.store.find, key)
        if existing is not None and existing.metadata.get("sha256"):
            log.info("%s already archived at %s; nothing written", data["call_sid"], key)
            return self._archived(event_id, data, existing, already=True)
        # A recording of more than one part has the stale multipart uploads of its key (left
        # by a crashed attempt) cleared before its own is created. The listing runs while the
        # body downloads, off the recording's critical path, once Content-Length says it is
        # large (or says nothing); never for a recording that goes up in one PUT.
        clearing: asyncio.Future[int] | None = None

        def on_length(declared: int | None) -> None:
            nonlocal clearing
            if declared is None or declared > self.store.part_size:
                clearing = asyncio.ensure_future(self._store_call(self.store.abort_stale, key))

        sink = await asyncio.to_thread(self._temp_file)
        try:
            downloaded = await self.fetcher.download(
                data["recording_url"], sink, on_length=on_length
            )
            await asyncio.to_thread(sink.flush)
            metadata = {
                "call_sid": data["call_sid"],
                "customer_id": data["customer_id"],
                "app_id": data["app_id"],
                "sha256": downloaded.sha256,
                "duration": str(data.get("duration", "")),
                "recorded_at": data["timestamp"],
                "source_url": source_url(data["recording_url"]),
            }
            metadata = {name: quote(value, safe=":/@._-=+") for name, value in metadata.items()}
            if downloaded.size <= self.store.part_size:
                # One part or less: one PUT. It never makes a multipart upload, so there is
                # none of its own to clear (a larger recording's are cleared below).
                if clearing is not None:
                    await clearing  # started on an undeclared length: let it end first
                await self._store_call(
                    self.store.put,
                    Path(sink.name),
                    key,
                    content_type=downloaded.content_type,
                    metadata=metadata,
                )
            else:
                if clearing is None:
                    # Not reached today (the fetcher refuses a body longer than its
                    # Content-Length); kept so a multipart upload is never created
                    # without the stale ones of its key cleared first.
                    clearing = asyncio.ensure_future(self._store_call(self.store.abort_stale, key))
                # Done before the upload is created: the listing must not see our own upload.
                stale = await clearing
                if stale:
                    log.warning("aborted %d stale multipart upload(s) of %s", stale, key)
                # The store waits for its parts in flight even when cancelled, so the temp file
                # is never closed (deleted) under them, and no upload is left incomplete.
                await self.store.upload(
                    Path(sink.name),
                    key,
                    size=downloaded.size,
                    content_type=downloaded.content_type,
                    metadata=metadata,
                )
        finally:
            if clearing is not None:
                # A failed download leaves the listing running: wait for it (its error, if
                # any, is dropped; the attempt is failing already) so no call outlives it.
                await asyncio.wait([clearing])
                if not clearing.cancelled():
                    clearing.exception()
            await asyncio.to_thread(sink.close)
        stored = StoredObject(key, downloaded.size, downloaded.content_type, metadata)
        return self._archived(event_id, data, stored, already=False)

    async def _store_call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """A blocking store call on the store's own threads (a thread of the loop's default
        executor for a store without them, as the unit tests' fakes)."""
        call = getattr(self.store, "call", None)
        if call is None:
            return await asyncio.to_thread(function, *args, **kwargs)
        return await call(function, *args, **kwargs)

    def _temp_file(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the caller
            prefix="exopipe-recording-", dir=self.temp_dir, delete=True
        )

    def _archived(
        self, event_id: str, data: dict[str, Any], stored: StoredObject, *, already: bool
    ) -> Outcome:
        return outcomes.archived(
            call_sid=data["call_sid"],
            customer_id=data["customer_id"],
            app_id=data["app_id"],
            bucket=self.store.bucket,
            key=stored.key,
            size_bytes=stored.size,
            sha256=stored.metadata["sha256"],
            content_type=stored.content_type,
            duration_seconds=data.get("duration"),
            recorded_at=data["timestamp"],
            archived_at=stored.last_modified or datetime.now(UTC),
            source_url=source_url(data["recording_url"]),
            source_event_id=event_id,
            already_archived=already,
        )


def _original(value: bytes) -> dict[str, Any]:
    """The consumed record as an object for the failed record, even when it is not JSON."""
    try:
        parsed = json_codec.loads(value)
    except json_codec.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {"raw": value[:4096].decode("utf-8", errors="replace")}
