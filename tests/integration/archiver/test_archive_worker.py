"""The archiver worker on real Kafka, S3Proxy and the Exotel double (one worker, many cases)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.archiver.conftest import (
    DISABLED_APP,
    PASSWORD,
    ArchiverRig,
    collect_outcomes,
)
from topics.events import CloudEvent

MiB = 1024 * 1024


async def outcome_for(rig: ArchiverRig, call_sid: str, *, count: int = 1, wait: float = 90.0
                      ) -> list[tuple[str, CloudEvent]]:  # fmt: skip
    """The archived/failed records for ``call_sid``, once ``count`` of them are there."""
    assert rig.worker.alive(), rig.worker.logs()[-3000:]
    return await collect_outcomes(rig.settings, call_sid, count=count, wait_seconds=wait)


async def only(rig: ArchiverRig, call_sid: str) -> tuple[str, dict[str, Any]]:
    found = await outcome_for(rig, call_sid)
    assert len(found) == 1, (found, rig.worker.logs()[-3000:])
    kind, event = found[0]
    return kind, event.data


async def test_10_mib_recording_lands_byte_identical(rig: ArchiverRig) -> None:
    name = rig.name("ten")
    served = rig.register(name, 10 * MiB, content_type="audio/wav")
    call_sid = f"CA{name}"
    await rig.send((call_sid, rig.url(name)))
    kind, data = await only(rig, call_sid)
    assert kind == "archived", data
    key = f"recordings/customer_id=acme/app_id=app1/date=2025-03-01/{call_sid}.mp3"
    assert data["key"] == key
    assert data["uri"] == f"s3://{rig.bucket}/{key}"
    assert data["size_bytes"] == 10 * MiB
    assert data["sha256"] == served["sha256"]
    assert data["content_type"] == "audio/wav"
    assert data["duration_seconds"] == 61
    assert await asyncio.to_thread(rig.object_sha256, key) == served["sha256"]
    head = rig.s3.head_object(Bucket=rig.bucket, Key=key)
    assert head["ContentType"] == "audio/wav"
    assert head["Metadata"]["sha256"] == served["sha256"]
    assert head["Metadata"]["call_sid"] == call_sid
    assert head["Metadata"]["source_url"] == rig.url(name)
    assert PASSWORD not in str(head) + str(data)


@pytest.mark.slow
async def test_200_mib_recording_lands_byte_identical(rig: ArchiverRig) -> None:
    name = rig.name("big")
    served = rig.register(name, 200 * MiB)
    call_sid = f"CA{name}"
    await rig.send((call_sid, rig.url(name)))
    kind, data = await only(rig, call_sid)
    assert kind == "archived", data
    assert data["size_bytes"] == 200 * MiB
    assert await asyncio.to_thread(rig.object_sha256, data["key"]) == served["sha256"]
    assert rig.incomplete_uploads() == []


async def test_replayed_event_does_not_write_again(rig: ArchiverRig) -> None:
    name = rig.name("replay")
    rig.register(name, 1 * MiB)
    call_sid = f"CA{name}"
    await rig.send((call_sid, rig.url(name)))
    kind, first = await only(rig, call_sid)
    assert kind == "archived"
    modified = rig.s3.head_object(Bucket=rig.bucket, Key=first["key"])["LastModified"]
    await rig.send((call_sid, rig.url(name)))
    found = await outcome_for(rig, call_sid, count=2)
    assert [kind for kind, _ in found] == ["archived", "archived"]
    again = found[1][1].data
    assert again["already_archived"] is True
    assert again["sha256"] == first["sha256"]
    assert rig.fetches(name) == 1
    assert rig.s3.head_object(Bucket=rig.bucket, Key=first["key"])["LastModified"] == modified


async def test_500_twice_then_200_archives_once(rig: ArchiverRig) -> None:
    name = rig.name("flaky")
    served = rig.register(name, 2 * MiB, fail_next=2, fail_status=500)
    call_sid = f"CA{name}"
    await rig.send((call_sid, rig.url(name)))
    kind, data = await only(rig, call_sid)
    assert kind == "archived"
    assert data["sha256"] == served["sha256"]
    assert rig.fetches(name) == 3
    assert len(rig.keys(f"recordings/customer_id=acme/app_id=app1/date=2025-03-01/{call_sid}")) == 1


async def test_404_goes_to_failed(rig: ArchiverRig) -> None:
    call_sid = f"CA{rig.name('missing')}"
    await rig.send((call_sid, rig.url(rig.name("never-registered"))))
    kind, data = await only(rig, call_sid)
    assert (kind, data["outcome"], data["reason"], data["permanent"]) == (
        "failed", "failed", "not_found", True,
    )  # fmt: skip
    assert data["original_event"]["data"]["call_sid"] == call_sid


async def test_wrong_credentials_are_forbidden_not_retried(rig: ArchiverRig) -> None:
    name = rig.name("locked")
    rig.register(name, 1024, basic_auth=("someone", "else"))
    call_sid = f"CA{name}"
    await rig.send((call_sid, rig.url(name)))
    kind, data = await only(rig, call_sid)
    assert (kind, data["reason"]) == ("failed", "forbidden")
    assert rig.fetches(name) == 1


@pytest.mark.slow
async def test_too_large_goes_to_failed(rig: ArchiverRig) -> None:
    declared = rig.name("declared")
    rig.register(declared, 1024, content_length=211 * MiB)
    streamed = rig.name("chunked")  # no Content-Length: the limit must count bytes read
    rig.register(streamed, 211 * MiB, content_length="omit")
    await rig.send((f"CA{declared}", rig.url(declared)), (f"CA{streamed}", rig.url(streamed)))
    for name in (declared, streamed):
        kind, data = await only(rig, f"CA{name}")
        assert (kind, data["reason"], data["permanent"]) == ("failed", "too_large", True)
    assert rig.keys(f"recordings/customer_id=acme/app_id=app1/date=2025-03-01/CA{streamed}") == []


SSRF_URLS = {
    "file": ("file:///etc/passwd", "bad_url"),
    "metadata": ("http://169.254.169.254/latest/meta-data/", "ssrf_refused"),
    "kafka-port": ("http://localhost:9092/", "ssrf_refused"),
    "redis-port": ("http://localhost:6379/", "ssrf_refused"),
    "mapped-loopback": ("http://[::ffff:127.0.0.1]:{port}/recordings/x.mp3", "ssrf_refused"),
    "decimal": ("http://2130706433:{port}/recordings/x.mp3", "ssrf_refused"),
    "octal": ("http://0177.0.0.1:{port}/recordings/x.mp3", "ssrf_refused"),
    "userinfo": ("http://u:p@localhost:{port}/recordings/x.mp3", "ssrf_refused"),
    "not-allowlisted-ip-of-same-server": ("http://127.0.0.1:{port}/recordings/x.mp3",
                                          "ssrf_refused"),
}  # fmt: skip


async def test_ssrf_cases_are_refused_without_a_request(rig: ArchiverRig) -> None:
    port = rig.url("x").split(":")[2].split("/")[0]
    target = rig.name("target")  # the real recording the refused URLs point at
    rig.register(target, 1024)
    sends = []
    for case, (url, _) in SSRF_URLS.items():
        url = url.format(port=port).replace("/recordings/x.mp3", f"/recordings/{target}.mp3")
        sends.append((f"CA{rig.name(case)}", url))
    await rig.send(*sends)
    for (call_sid, _), (case, (_, reason)) in zip(sends, SSRF_URLS.items(), strict=True):
        kind, data = await only(rig, call_sid)
        assert (kind, data["reason"]) == ("failed", reason), case
    assert rig.fetches(target) == 0


async def test_redirect_from_allowed_host_to_loopback_address_is_refused(rig: ArchiverRig) -> None:
    target = rig.name("inner")
    rig.register(target, 1024, basic_auth=None)
    hop = rig.name("hop")
    rig.register(hop, 1024, redirect_to=rig.url(target, host="127.0.0.1"))
    call_sid = f"CA{hop}"
    await rig.send((call_sid, rig.url(hop)))
    kind, data = await only(rig, call_sid)
    assert (kind, data["reason"]) == ("failed", "ssrf_refused")
    assert "127.0.0.1" in data["detail"]
    assert rig.fetches(hop) == 1
    assert rig.fetches(target) == 0


async def test_disabled_recording_is_skipped(rig: ArchiverRig) -> None:
    name = rig.name("off")
    rig.register(name, 1024)
    call_sid = f"CA{name}"
    await rig.send((call_sid, rig.url(name), DISABLED_APP))
    kind, data = await only(rig, call_sid)
    assert (kind, data["outcome"], data["reason"]) == ("failed", "skipped", "recording_disabled")
    assert rig.fetches(name) == 0


def test_the_credential_never_reaches_the_logs(rig: ArchiverRig) -> None:
    logs = rig.worker.logs()
    assert "archived" in logs  # the worker did log its work
    assert PASSWORD not in logs
