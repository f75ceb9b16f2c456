"""One event end to end with a fake store and httpx.MockTransport: outcome per case."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from topics.catalog import RECORDING_ARCHIVED, RECORDING_FAILED, WEBHOOK_RECORDING_READY
from topics.events import make_event
from workers.archiver.archive import Archiver
from workers.archiver.fetch import Fetcher
from workers.archiver.ssrf import Guard, GuardPolicy
from workers.archiver.store import StoredObject
from workers.config import RecordingSettings
from workers.retry import RetryPolicy

URL = "https://recordings.exotel.com/acc/CA1.mp3?sig=SECRETSIG"
BODY = b"ID3" + bytes(range(256)) * 100


class FakeStore:
    """The RecordingStore interface over a dict; uploads read the temp file like the real one."""

    bucket = "bkt"
    part_size = 5 * 1024 * 1024

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, dict[str, str]]] = {}
        self.uploads = 0  # objects written, by either call
        self.puts = 0
        self.stale_aborts = 0

    def find(self, key: str) -> StoredObject | None:
        if key not in self.objects:
            return None
        body, content_type, metadata = self.objects[key]
        return StoredObject(key, len(body), content_type, metadata)

    def abort_stale(self, key: str) -> int:
        self.stale_aborts += 1
        return 0

    def put(self, path: Path, key: str, *, content_type: str, metadata: dict[str, str]) -> None:
        self.uploads += 1
        self.puts += 1
        self.objects[key] = (path.read_bytes(), content_type, metadata)

    async def upload(self, path: Path, key: str, *, size: int, content_type: str,
                     metadata: dict[str, str]) -> None:  # fmt: skip
        self.uploads += 1
        self.objects[key] = (await asyncio.to_thread(path.read_bytes), content_type, metadata)


def event_bytes(**overrides: Any) -> bytes:
    data = {
        "event": "recording_ready", "call_sid": "CA1", "customer_id": "acme", "app_id": "app1",
        "timestamp": "2025-03-01T10:00:00.000Z", "received_at": "2025-03-01T10:00:01.000Z",
        "from": None, "to": None, "direction": None, "status": None, "source_format": "json",
        "original": {}, "recording_url": URL, "duration": 42,
    }  # fmt: skip
    data.update(overrides)
    return make_event(WEBHOOK_RECORDING_READY, data, source="test").to_bytes()


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    yield body


def archiver(
    handler: Any, store: FakeStore, *, enabled: bool | None = None, max_bytes: int = 10**6
) -> Archiver:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    policy = GuardPolicy.from_settings(RecordingSettings(hosts=("recordings.exotel.com",)))
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    fetcher = Fetcher(
        client, Guard(policy, resolver=resolve), credentials=lambda h: None,
        max_bytes=max_bytes, max_redirects=2, total_timeout=5,
    )  # fmt: skip
    return Archiver(
        fetcher=fetcher, store=store,  # type: ignore[arg-type]
        policy=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002),
        recording_enabled=lambda c, a: enabled,
    )  # fmt: skip


async def test_archives_with_metadata_and_announces() -> None:
    store = FakeStore()
    outcome = await archiver(lambda r: httpx.Response(200, content=streamed(BODY)), store).handle(
        event_bytes()
    )
    assert outcome.spec is RECORDING_ARCHIVED
    data = outcome.event.data
    key = "recordings/customer_id=acme/app_id=app1/date=2025-03-01/CA1.mp3"
    assert data["key"] == key and data["uri"] == f"s3://bkt/{key}"
    assert data["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert data["size_bytes"] == len(BODY) and data["duration_seconds"] == 42
    assert data["already_archived"] is False
    body, content_type, metadata = store.objects[key]
    assert body == BODY and content_type == "audio/mpeg"
    assert metadata["sha256"] == data["sha256"]
    assert metadata["source_url"] == "https://recordings.exotel.com/acc/CA1.mp3"
    assert "SECRETSIG" not in outcome.event.to_bytes().decode().replace(URL, "")


async def test_second_delivery_writes_nothing() -> None:
    store = FakeStore()
    fetches: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetches.append(request)
        return httpx.Response(200, content=streamed(BODY))

    first = await archiver(handler, store).handle(event_bytes())
    second = await archiver(handler, store).handle(event_bytes())
    assert store.uploads == 1 and len(fetches) == 1
    assert second.event.data["already_archived"] is True
    assert second.event.id == first.event.id


async def test_500_twice_then_200_archives_once() -> None:
    store = FakeStore()
    statuses = iter([500, 500, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(statuses), content=streamed(BODY))

    outcome = await archiver(handler, store).handle(event_bytes())
    assert outcome.spec is RECORDING_ARCHIVED
    assert store.uploads == 1


async def test_transient_until_the_last_attempt_fails_not_permanently() -> None:
    outcome = await archiver(lambda r: httpx.Response(503), FakeStore()).handle(event_bytes())
    assert outcome.spec is RECORDING_FAILED
    assert outcome.event.data["reason"] == "retries_exhausted"
    assert outcome.event.data["permanent"] is False
    assert outcome.event.data["attempts"] == 3


async def test_404_fails_at_once_with_the_original_event() -> None:
    raw = event_bytes()
    outcome = await archiver(lambda r: httpx.Response(404), FakeStore()).handle(raw)
    data = outcome.event.data
    assert (data["outcome"], data["reason"], data["attempts"]) == ("failed", "not_found", 1)
    assert data["original_event"]["data"]["call_sid"] == "CA1"


async def test_ssrf_refusal_is_a_permanent_failure() -> None:
    store = FakeStore()
    outcome = await archiver(lambda r: httpx.Response(200), store).handle(
        event_bytes(recording_url="file:///etc/passwd")
    )
    assert outcome.event.data["reason"] == "bad_url"
    assert store.uploads == 0


async def test_disabled_recording_is_skipped_without_fetching() -> None:
    fetches: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetches.append(request)
        return httpx.Response(200)

    outcome = await archiver(handler, FakeStore(), enabled=False).handle(event_bytes())
    assert outcome.spec is RECORDING_FAILED
    assert outcome.event.data["outcome"] == "skipped"
    assert outcome.event.data["reason"] == "recording_disabled"
    assert fetches == []


async def test_garbage_record_is_a_bad_event() -> None:
    outcome = await archiver(lambda r: httpx.Response(200), FakeStore()).handle(b"\xffnot json")
    assert outcome.event.data["reason"] == "bad_event"
    assert outcome.event.data["call_sid"] is None


async def test_a_recording_of_one_part_or_less_is_one_put_and_clears_no_uploads() -> None:
    store = FakeStore()
    store.part_size = len(BODY)

    def declared(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": str(len(BODY))}
        return httpx.Response(200, headers=headers, content=streamed(BODY))

    outcome = await archiver(declared, store).handle(event_bytes())
    assert outcome.spec is RECORDING_ARCHIVED
    assert store.puts == 1 and store.uploads == 1 and store.stale_aborts == 0
    ((body, _, metadata),) = store.objects.values()
    assert body == BODY and metadata["sha256"] == hashlib.sha256(BODY).hexdigest()


async def test_a_larger_recording_clears_stale_uploads_then_goes_up_in_parts() -> None:
    store = FakeStore()
    store.part_size = len(BODY) - 1
    outcome = await archiver(lambda r: httpx.Response(200, content=streamed(BODY)), store).handle(
        event_bytes()
    )
    assert outcome.spec is RECORDING_ARCHIVED
    assert store.puts == 0 and store.uploads == 1 and store.stale_aborts == 1


class SlowListingStore(FakeStore):
    """Records when the stale-upload listing ran, and when the body and the upload did."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def abort_stale(self, key: str) -> int:
        self.events.append("listing started")
        time.sleep(0.05)  # a thread of its own: the body keeps downloading meanwhile
        self.events.append("listing done")
        return super().abort_stale(key)

    async def upload(self, path: Path, key: str, *, size: int, content_type: str,
                     metadata: dict[str, str]) -> None:  # fmt: skip
        self.events.append("upload")
        await super().upload(path, key, size=size, content_type=content_type, metadata=metadata)


async def test_a_larger_recordings_stale_uploads_are_listed_while_it_downloads() -> None:
    store = SlowListingStore()
    store.part_size = len(BODY) // 4

    async def slow_body() -> AsyncIterator[bytes]:
        for start in range(0, len(BODY), len(BODY) // 4):
            await asyncio.sleep(0.02)
            store.events.append("chunk")
            yield BODY[start : start + len(BODY) // 4]

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": str(len(BODY))}
        return httpx.Response(200, headers=headers, content=slow_body())

    outcome = await archiver(handler, store).handle(event_bytes())
    assert outcome.spec is RECORDING_ARCHIVED and store.stale_aborts == 1
    events = store.events
    # Listed once the length was known, before the body was in; over before the upload began.
    assert events.index("listing started") < events.index("chunk")
    assert events.index("listing done") < events.index("upload")
    assert events[-1] == "upload"


async def test_a_failed_download_waits_for_its_listing() -> None:
    store = SlowListingStore()
    store.part_size = 10

    async def broken() -> AsyncIterator[bytes]:
        yield BODY[:100]
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(len(BODY))}, content=broken())

    outcome = await archiver(handler, store).handle(event_bytes())
    assert outcome.spec is RECORDING_FAILED
    # Each of the three attempts listed, and each listing ended within its own attempt.
    assert store.events == ["listing started", "listing done"] * 3
