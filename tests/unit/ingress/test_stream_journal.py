"""The open-streams journal: recorded before a stream's first record, removed after its closed,
found again after a crash, a corrupt file set aside; and a restart closing what it finds."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from topics.catalog import STREAM_AUDIO, STREAM_EVENT
from workers.exotel_double.stream_frames import start_frame
from workers.ingress.app import JOURNAL_DIR, STREAMS
from workers.ingress.sink import Sink, SpoolFull
from workers.ingress.stream_journal import OpenStream, StreamJournal
from workers.ingress.stream_restart import RESTART_FRAME_INDEX

from .conftest import eventually
from .test_stream import URL, WHO, records


def an_open_stream(sid: str = "S1") -> OpenStream:
    return OpenStream(
        connection_id=str(uuid.uuid4()),
        stream_sid=sid,
        customer_id="c1",
        app_id="a1",
        started_at="2026-01-01T10:00:00.000Z",
    )


async def test_a_stream_is_recorded_then_removed(tmp_path: Path) -> None:
    journal = StreamJournal(tmp_path / "journal")
    assert journal.left_open() == []
    one, two = an_open_stream("S1"), an_open_stream("S2")
    await journal.record(one)
    await journal.record(two)
    path = tmp_path / "journal" / f"{one.connection_id}.open"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(s.stream_sid for s in journal.left_open()) == ["S1", "S2"]
    await journal.remove(one.connection_id)
    await journal.remove(one.connection_id)  # twice: nothing to do
    assert journal.left_open() == [two]


async def test_what_a_crashed_process_recorded_is_found_by_the_next(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    stream = an_open_stream()
    await StreamJournal(directory).record(stream)
    (directory / "half-written.tmp").write_bytes(b'{"connection_id": ')  # killed mid-write
    assert StreamJournal(directory).left_open() == [stream]
    assert sorted(p.name for p in directory.iterdir()) == [f"{stream.connection_id}.open"]


async def test_a_corrupt_file_is_moved_aside_and_logged(tmp_path: Path, caplog) -> None:
    directory = tmp_path / "journal"
    journal = StreamJournal(directory)
    good = an_open_stream()
    await journal.record(good)
    directory.joinpath("a.open").write_bytes(b"\x00not json")
    directory.joinpath("b.open").write_bytes(b'{"stream_sid": "S9"}')  # fields missing
    renamed = {**json.loads(directory.joinpath(f"{good.connection_id}.open").read_bytes())}
    directory.joinpath("c.open").write_bytes(json.dumps(renamed).encode())  # another's name
    with caplog.at_level(logging.ERROR):
        assert journal.left_open() == [good]
    assert sorted(p.name for p in directory.glob("*.corrupt")) == [
        "a.corrupt", "b.corrupt", "c.corrupt"]  # fmt: skip
    said = [r.getMessage().split(" is ")[0] for r in caplog.records]
    assert said == [f"open-stream file {name}.open" for name in "abc"]


async def test_an_open_stream_is_journaled_until_its_closed_is_delivered(
    make_client, broker, tmp_path
):
    journal = tmp_path / "spool" / JOURNAL_DIR
    async with make_client() as client:
        ws = await client.ws_connect(URL)
        await ws.send_str(json.dumps(start_frame(1, WHO, 8000)))
        await eventually(lambda: len(records(broker, STREAM_AUDIO)) == 1)
        (entry,) = journal.glob("*.open")
        recorded = json.loads(entry.read_bytes())
        connection = next(iter(client.app[STREAMS]._tasks))
        await ws.close()
        await eventually(lambda: len(records(broker, STREAM_EVENT)) == 2)
        await eventually(lambda: not list(journal.glob("*.open")))
    closed = records(broker, STREAM_EVENT)[-1]["data"]
    assert recorded == {
        "connection_id": connection.connection_id,
        "stream_sid": "S1",
        "customer_id": "c1",
        "app_id": "a1",
        "started_at": closed["closed"]["started_at"],
    }


async def test_a_restart_closes_the_streams_left_open_before_it_serves(
    make_client, broker, tmp_path
):
    journal = StreamJournal(tmp_path / "spool" / JOURNAL_DIR)
    left = an_open_stream("S7")
    await journal.record(left)
    async with make_client() as client:
        # on_startup has run: the closed records are delivered before the first request.
        audio, events = records(broker, STREAM_AUDIO), records(broker, STREAM_EVENT)
        metrics = await (await client.get("/metrics")).text()
    assert len(audio) == len(events) == 1 and audio[0]["id"] == events[0]["id"]
    data = audio[0]["data"]
    assert {k: data[k] for k in ("stream_sid", "connection_id", "customer_id", "app_id")} == {
        "stream_sid": "S7", "connection_id": left.connection_id,
        "customer_id": "c1", "app_id": "a1"}  # fmt: skip
    assert data["event"] == "closed" and data["frame_index"] == RESTART_FRAME_INDEX
    closed = data["closed"]
    assert (closed["reason"], closed["close_code"]) == ("ingress_restarted", 1006)
    assert closed["started_at"] == left.started_at and closed["lost"] == 0
    assert broker.sent[0].key == b"S7"
    assert journal.left_open() == []
    assert 'exopipe_ingress_streams_closed_total{reason="ingress_restarted"} 1.0' in metrics


async def test_a_closed_not_kept_at_restart_stays_journaled(
    make_client, broker, tmp_path, monkeypatch
):
    async def no_room(*args: object, **kwargs: object) -> str:
        raise SpoolFull("full (test)")

    journal = StreamJournal(tmp_path / "spool" / JOURNAL_DIR)
    left = an_open_stream()
    await journal.record(left)
    monkeypatch.setattr(Sink, "deliver", no_room)
    async with make_client():
        pass
    assert journal.left_open() == [left]  # the next start tries again
