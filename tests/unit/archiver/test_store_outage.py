"""Our object store failing is not the recording's fault: attempts spent on an unavailable store
never dead-letter the event; the worker keeps trying until the store is back."""

from __future__ import annotations

from pathlib import Path

import httpx

from topics.catalog import RECORDING_ARCHIVED, RECORDING_FAILED
from workers.archiver.store import StoredObject, StoreUnavailable

from .test_archive import BODY, FakeStore, archiver, event_bytes, streamed


class FlakyStore(FakeStore):
    """HEAD fails ``outage`` times (the store is down), then the store works."""

    def __init__(self, outage: int) -> None:
        super().__init__()
        self.outage = outage
        self.heads = 0

    def find(self, key: str) -> StoredObject | None:
        self.heads += 1
        if self.heads <= self.outage:
            raise StoreUnavailable(f"S3 HEAD {key}: EndpointConnectionError")
        return super().find(key)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=streamed(BODY))


async def test_an_outage_longer_than_the_attempts_still_archives(tmp_path: Path) -> None:
    store = FlakyStore(outage=7)  # the policy allows 3 attempts per round
    outcome = await archiver(ok, store).handle(event_bytes())
    assert outcome.spec is RECORDING_ARCHIVED
    assert store.uploads == 1 and store.heads == 8


async def test_download_failures_still_run_out(tmp_path: Path) -> None:
    outcome = await archiver(lambda r: httpx.Response(503), FakeStore()).handle(event_bytes())
    assert outcome.spec is RECORDING_FAILED
    assert outcome.event.data["reason"] == "retries_exhausted"
