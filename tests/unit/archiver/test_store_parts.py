"""Parts go up several at once from one budget per worker: bounded, in order, aborted on failure
and on cancellation only after the parts in flight have ended."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from topics.catalog import RECORDING_ARCHIVED
from workers.archiver.parts import PartBody, PartBudget
from workers.archiver.store import MIN_PART_SIZE, RecordingStore, StoreUnavailable

from .test_archive import archiver, event_bytes, streamed

PART = MIN_PART_SIZE


class FakeS3:
    """Multipart calls of a boto3 client; counts parts in flight, can fail or stall a part."""

    def __init__(
        self, *, fail_part: int | None = None, fail_times: int = 10**9, delay: float = 0.02
    ) -> None:
        self.fail_part = fail_part
        self.fail_times = fail_times
        self.delay = delay
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.parts: dict[tuple[str, int], bytes] = {}
        self.bodies: dict[int, type] = {}
        self.completed: dict[str, list[dict[str, Any]]] = {}
        self.aborted: list[tuple[str, int]] = []  # (upload id, parts still running then)
        self.puts: dict[str, tuple[bytes, Any]] = {}  # key -> (body, metadata) of single PUTs
        self.release = threading.Event()
        self.release.set()

    def create_multipart_upload(self, **kw: Any) -> dict[str, str]:
        return {"UploadId": f"up-{kw['Key']}"}

    def upload_part(self, *, UploadId: str, PartNumber: int, Body: Any, **kw: Any) -> Any:  # noqa: N803
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            self.release.wait(10)
            if PartNumber == self.fail_part and self.fail_times > 0:
                self.fail_times -= 1
                raise EndpointConnectionError(endpoint_url="http://s3")
            data = bytes(Body) if isinstance(Body, bytearray) else Body.read()
            self.parts[(UploadId, PartNumber)] = data
            self.bodies[PartNumber] = type(Body)
            return {"ETag": f'"{UploadId}-{PartNumber}"'}
        finally:
            with self.lock:
                self.active -= 1

    def put_object(self, *, Key: str, Body: Any, Metadata: Any, **kw: Any) -> None:  # noqa: N803
        if self.fail_part == 0 and self.fail_times > 0:
            self.fail_times -= 1
            raise EndpointConnectionError(endpoint_url="http://s3")
        self.puts[Key] = (Body.read(), Metadata)

    def complete_multipart_upload(self, *, UploadId: str, MultipartUpload: Any, **kw: Any) -> None:  # noqa: N803
        self.completed[UploadId] = MultipartUpload["Parts"]

    def abort_multipart_upload(self, *, UploadId: str, **kw: Any) -> None:  # noqa: N803
        self.aborted.append((UploadId, self.active))

    def head_object(self, *, Key: str, **kw: Any) -> Any:  # noqa: N803
        raise ClientError({"Error": {"Code": "404"}}, "HeadObject")

    def get_paginator(self, name: str) -> Any:
        class Pages:
            def paginate(self, **kw: Any) -> list[dict[str, Any]]:
                return [{"Uploads": []}]

        return Pages()

    def body(self, upload_id: str) -> bytes:
        numbers = sorted(n for u, n in self.parts if u == upload_id)
        return b"".join(self.parts[(upload_id, n)] for n in numbers)


def recording(tmp_path: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


async def upload(store: RecordingStore, path: Path, key: str, size: int) -> None:
    await store.upload(path, key, size=size, content_type="audio/mpeg", metadata={"sha256": "x"})


async def test_parts_go_up_at_once_within_the_budget_and_in_order(tmp_path: Path) -> None:
    s3 = FakeS3()
    store = RecordingStore(s3, "bkt", PART, parts_in_flight=3)
    size = 7 * PART + 123
    path, data = recording(tmp_path, "a", size)
    await upload(store, path, "a", size)
    assert s3.body("up-a") == data
    assert [p["PartNumber"] for p in s3.completed["up-a"]] == list(range(1, 9))
    assert s3.completed["up-a"][7]["ETag"] == '"up-a-8"'
    assert s3.peak == 3 and store.budget.allocated == 3
    # full parts go as the reused buffer, the short last one as a view of it
    assert s3.bodies[1] is bytearray and s3.bodies[8] is PartBody


async def test_one_budget_bounds_every_upload_of_the_worker(tmp_path: Path) -> None:
    s3 = FakeS3()
    store = RecordingStore(s3, "bkt", PART, parts_in_flight=4)
    files = [recording(tmp_path, f"r{i}", 3 * PART) for i in range(5)]
    await asyncio.gather(*(upload(store, p, p.name, 3 * PART) for p, _ in files))
    assert s3.peak == 4 and store.budget.allocated == 4
    for path, data in files:
        assert s3.body(f"up-{path.name}") == data


async def test_empty_recording_is_one_empty_part(tmp_path: Path) -> None:
    s3 = FakeS3()
    path, _ = recording(tmp_path, "e", 0)
    await upload(RecordingStore(s3, "bkt", PART), path, "e", 0)
    assert s3.completed["up-e"] == [{"PartNumber": 1, "ETag": '"up-e-1"'}]
    assert s3.parts[("up-e", 1)] == b""


async def test_a_failed_part_aborts_after_the_others_end(tmp_path: Path) -> None:
    s3 = FakeS3(fail_part=2)
    store = RecordingStore(s3, "bkt", PART, parts_in_flight=3)
    path, _ = recording(tmp_path, "f", 10 * PART)
    with pytest.raises(StoreUnavailable):
        await upload(store, path, "f", 10 * PART)
    assert "up-f" not in s3.completed
    assert s3.aborted == [("up-f", 0)]
    assert s3.active == 0
    assert len(s3.parts) < 9  # it stopped sending parts once one had failed


async def test_cancelled_upload_waits_for_its_parts_then_aborts(tmp_path: Path) -> None:
    s3 = FakeS3()
    s3.release.clear()  # parts hang until released
    store = RecordingStore(s3, "bkt", PART, parts_in_flight=2)
    path, _ = recording(tmp_path, "c", 6 * PART)
    task = asyncio.create_task(upload(store, path, "c", 6 * PART))
    while s3.active < 2:  # noqa: ASYNC110 - the parts run in threads, not on this loop
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the two parts reading the temp file
    s3.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s3.aborted == [("up-c", 0)] and "up-c" not in s3.completed
    # the budget is whole again for the next upload
    s3.release.set()
    await upload(store, path, "c2", 6 * PART)
    assert store.budget.allocated == 2


async def test_budget_hands_out_at_most_its_size() -> None:
    budget = PartBudget(2, 16)
    a, b = await budget.take(), await budget.take()
    waiting = asyncio.create_task(budget.take())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    budget.give(a)
    assert await waiting is a
    budget.give(b)
    assert budget.allocated == 2


def test_part_body_reads_and_seeks_a_view_without_the_rest() -> None:
    buffer = bytearray(b"0123456789")
    body = PartBody(memoryview(buffer)[:6])
    assert len(body) == 6
    assert body.read(4) == b"0123" and body.tell() == 4
    assert body.read() == b"45" and body.read(3) == b""
    body.seek(1)
    target = bytearray(3)
    assert body.readinto(target) == 3 and target == b"123"
    assert body.seek(0, io.SEEK_END) == 6


BIG = os.urandom(3 * PART + 1000)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=streamed(BIG))


def files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def big_archiver(s3: FakeS3, tmp_path: Path) -> Any:
    store = RecordingStore(s3, "bkt", PART, parts_in_flight=2)
    worker = archiver(ok, store, max_bytes=10 * PART)  # type: ignore[arg-type]
    return dataclasses.replace(worker, temp_dir=tmp_path)


async def test_a_failed_upload_is_retried_and_leaves_no_temp_file(tmp_path: Path) -> None:
    s3 = FakeS3(fail_part=2, fail_times=1, delay=0)
    outcome = await big_archiver(s3, tmp_path).handle(event_bytes())
    assert outcome.spec is RECORDING_ARCHIVED
    assert outcome.event.data["sha256"] == hashlib.sha256(BIG).hexdigest()
    assert len(s3.aborted) == 1 and len(s3.completed) == 1
    (upload_id,) = s3.completed
    assert s3.body(upload_id) == BIG
    assert files(tmp_path) == []


async def test_a_cancelled_archive_aborts_its_upload_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    s3 = FakeS3(delay=0)
    s3.release.clear()
    task = asyncio.create_task(big_archiver(s3, tmp_path).handle(event_bytes()))
    while s3.active < 2:  # noqa: ASYNC110 - the parts run in threads, not on this loop
        await asyncio.sleep(0.01)
    assert len(files(tmp_path)) == 1  # the temp file the parts read
    task.cancel()
    await asyncio.sleep(0.05)
    assert len(files(tmp_path)) == 1  # not deleted under the parts in flight
    s3.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s3.completed == {} and len(s3.aborted) == 1
    assert files(tmp_path) == []


async def test_a_small_recording_is_one_put_with_its_metadata_and_no_multipart(
    tmp_path: Path,
) -> None:
    s3 = FakeS3(delay=0)
    small = b"ID3" + os.urandom(200 * 1024)
    store = RecordingStore(s3, "bkt", PART, parts_in_flight=2)
    worker = dataclasses.replace(
        archiver(lambda r: httpx.Response(200, content=streamed(small)), store),  # type: ignore[arg-type]
        temp_dir=tmp_path,
    )
    outcome = await worker.handle(event_bytes())
    assert outcome.spec is RECORDING_ARCHIVED
    ((body, metadata),) = s3.puts.values()
    assert body == small and metadata["sha256"] == hashlib.sha256(small).hexdigest()
    assert s3.completed == {} and s3.parts == {} and s3.aborted == []
    assert files(tmp_path) == []


async def test_a_failed_put_is_the_store_unavailable(tmp_path: Path) -> None:
    s3 = FakeS3(fail_part=0, fail_times=1)
    path, data = recording(tmp_path, "p", 1024)
    store = RecordingStore(s3, "bkt", PART)
    with pytest.raises(StoreUnavailable):
        store.put(path, "p", content_type="audio/mpeg", metadata={"sha256": "x"})
    store.put(path, "p", content_type="audio/mpeg", metadata={"sha256": "x"})
    assert s3.puts["p"][0] == data
