"""Recording files: content and sha256, basic auth, HEAD, failures, redirects, length lies."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from workers.exotel_double.content import CHUNK_SIZE, iter_content, sha256_of
from workers.exotel_double.control import AsyncDoubleControl, ControlError
from workers.exotel_double.runner import DoubleServer


@pytest.fixture
async def http(double: DoubleServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=double.base_url, timeout=10) as client:
        yield client


def test_content_is_deterministic_sized_and_chunked() -> None:
    size = 3 * CHUNK_SIZE + 17
    chunks = list(iter_content(size, "s1"))
    assert sum(map(len, chunks)) == size
    assert max(map(len, chunks)) <= CHUNK_SIZE
    assert len(chunks) == 4
    assert b"".join(chunks) == b"".join(iter_content(size, "s1"))
    assert b"".join(chunks) != b"".join(iter_content(size, "s2"))
    # The bytes do not depend on how they are cut into chunks.
    assert b"".join(iter_content(size, "s1", chunk_size=1000)) == b"".join(chunks)
    assert b"".join(iter_content(1000, "s1")) == b"".join(chunks)[:1000]
    assert sha256_of(size, "s1") == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert list(iter_content(0, "s1")) == []


def test_chunks_in_another_order_change_the_content() -> None:
    """A part uploaded twice, dropped or out of order must not leave the same sha256."""
    first, second, third = iter_content(3 * CHUNK_SIZE, "s1")
    assert len({first, second, third}) == 3
    swapped = hashlib.sha256(second + first + third).hexdigest()
    repeated = hashlib.sha256(first + first + third).hexdigest()
    assert sha256_of(3 * CHUNK_SIZE, "s1") not in {swapped, repeated}


async def test_register_and_fetch(ctl: AsyncDoubleControl, http: httpx.AsyncClient) -> None:
    size = 1_000_003
    info = await ctl.register_recording("call_123.mp3", size, seed=7)
    assert info["path"] == "/recordings/call_123.mp3"
    assert info["sha256"] == sha256_of(size, "7")
    response = await http.get("/recordings/call_123.mp3")
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["content-length"] == str(size)
    assert len(response.content) == size
    assert hashlib.sha256(response.content).hexdigest() == info["sha256"]
    assert (await ctl.recording("call_123.mp3"))["fetches"] == 1
    assert ctl.recording_url("call_123.mp3").endswith("/recordings/call_123.mp3")


async def test_seed_defaults_to_name_and_content_type_is_settable(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    a = await ctl.register_recording("a.wav", 5000, content_type="audio/wav")
    b = await ctl.register_recording("b.wav", 5000)
    assert a["sha256"] != b["sha256"]
    response = await http.get("/recordings/a.wav")
    assert response.headers["content-type"] == "audio/wav"
    assert hashlib.sha256(response.content).hexdigest() == a["sha256"]


async def test_head_gives_headers_only(ctl: AsyncDoubleControl, http: httpx.AsyncClient) -> None:
    info = await ctl.register_recording("h.mp3", 12345)
    response = await http.head("/recordings/h.mp3")
    assert response.status_code == 200
    assert response.headers["content-length"] == "12345"
    assert response.headers["etag"] == f'"{info["sha256"]}"'
    assert response.content == b""


async def test_basic_auth_is_required_when_set(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    info = await ctl.register_recording("p.mp3", 4096, basic_auth=("api_key", "api_token"))
    for auth in (None, ("api_key", "wrong"), ("other", "api_token"), ("api_key", "")):
        response = await http.get("/recordings/p.mp3", auth=auth)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic ")
    bearer = await http.get("/recordings/p.mp3", headers={"Authorization": "Bearer api_token"})
    assert bearer.status_code == 401
    assert (await http.head("/recordings/p.mp3")).status_code == 401
    response = await http.get("/recordings/p.mp3", auth=("api_key", "api_token"))
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == info["sha256"]


async def test_fail_next_fetches(ctl: AsyncDoubleControl, http: httpx.AsyncClient) -> None:
    await ctl.register_recording("f.mp3", 100, fail_next=2, fail_status=502)
    statuses = [(await http.get("/recordings/f.mp3")).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert (await ctl.recording("f.mp3"))["fetches"] == 3


async def test_redirect(ctl: AsyncDoubleControl, http: httpx.AsyncClient) -> None:
    target = "http://127.0.0.1:6379/internal"
    await ctl.register_recording("r.mp3", 100, redirect_to=target)
    response = await http.get("/recordings/r.mp3")
    assert response.status_code == 302
    assert response.headers["location"] == target
    assert len(response.content) < 100


async def test_omitted_content_length_is_chunked(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    info = await ctl.register_recording("c.mp3", 300_000, content_length="omit")
    response = await http.get("/recordings/c.mp3")
    assert response.status_code == 200
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    assert hashlib.sha256(response.content).hexdigest() == info["sha256"]


async def test_declared_length_larger_than_body_breaks_off(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    await ctl.register_recording("big.mp3", 1000, content_length=10 * 1024**3)
    head = await http.head("/recordings/big.mp3")
    assert head.headers["content-length"] == str(10 * 1024**3)
    received = 0
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream("GET", "/recordings/big.mp3") as response:
            assert response.headers["content-length"] == str(10 * 1024**3)
            async for chunk in response.aiter_bytes():
                received += len(chunk)
    assert received == 1000


async def test_declared_length_smaller_than_file_truncates(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    info = await ctl.register_recording("small.mp3", 100_000, content_length=10)
    response = await http.get("/recordings/small.mp3")
    assert response.headers["content-length"] == "10"
    assert response.content == b"".join(iter_content(100_000, "small.mp3"))[:10]
    assert hashlib.sha256(response.content).hexdigest() != info["sha256"]


async def test_unknown_recording_and_wrong_method(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/recordings/nope.mp3")).status_code == 404
    await ctl.register_recording("x.mp3", 10)
    response = await http.delete("/recordings/x.mp3")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_recording_fetches_are_logged_with_auth_redacted(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    await ctl.register_recording("l.mp3", 10, basic_auth=("k", "s3cr3t"))
    await http.get("/recordings/l.mp3", auth=("k", "s3cr3t"))
    (entry,) = await ctl.requests(path_prefix="/recordings/")
    assert entry["status"] == 200
    assert entry["auth_scheme"] == "Basic"
    assert entry["headers"]["authorization"] == "REDACTED"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "../etc/passwd", "size": 1},
        {"name": "ok.mp3", "size": -1},
        {"name": "ok.mp3", "size": 1, "content_length": "maybe"},
    ],
)
async def test_bad_recording_registration_is_refused(
    ctl: AsyncDoubleControl, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ControlError, match="400"):
        await ctl.register_recording(**kwargs)  # type: ignore[arg-type]


async def test_injected_faults_and_latency_reach_recordings_too(
    ctl: AsyncDoubleControl, http: httpx.AsyncClient
) -> None:
    await ctl.register_recording("q.mp3", 10)
    await ctl.fail_next(1, 503, path_prefix="/recordings/", retry_after=3)
    first = await http.get("/recordings/q.mp3")
    assert (first.status_code, first.headers["retry-after"]) == (503, "3")
    assert (await http.get("/recordings/q.mp3")).status_code == 200
    # The fault answered before the recording handler: only one fetch reached it.
    assert (await ctl.recording("q.mp3"))["fetches"] == 1
