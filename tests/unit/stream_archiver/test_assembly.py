"""Per-stream assembly on one partition: what goes into the WAV, and when a stream is complete."""

from __future__ import annotations

import io
import wave
from datetime import timedelta
from pathlib import Path

import pytest

from tests.stream_records import StreamScript, pcm_chunks
from tests.unit.stream_archiver.conftest import QUIET, Feed
from workers.stream_archiver.frames import BadFrame, read_frame
from workers.stream_archiver.partition import ABANDONED


def _samples(path: Path) -> bytes:
    with wave.open(io.BytesIO(path.read_bytes())) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.readframes(wav.getnframes())


def test_a_stream_is_its_audio_without_the_duplicate_and_with_its_gap_counted(feed: Feed) -> None:
    s = StreamScript("S1")
    chunks = pcm_chunks(6)
    feed(s.connected(), s.start("CA9", sample_rate=16000))
    feed(*(s.media(c) for c in chunks[:3]))
    feed(s.media(chunks[3], seq=s._highest + 3))  # two numbers skipped
    feed(s.media(chunks[3], seq=s._highest))  # Exotel sent it twice
    feed(s.media(chunks[4]), s.media(chunks[5]), s.stop())
    assert feed.ended == []
    closed = s.closed()
    (ending,) = feed(closed)
    assembly = ending.assembly
    assert (ending.reason, assembly.call_sid) == ("stop_received", "CA9")
    sealed = assembly.seal()
    assert _samples(sealed.path) == b"".join(chunks)
    assert (sealed.audio.sample_rate, sealed.size) == (16000, 44 + 6 * 3200)
    assert sealed.duration_ms == 6 * 3200 // 2 * 1000 // 16000
    counts = assembly.counts
    assert (counts.media_frames, counts.gaps, counts.missing, counts.duplicates) == (6, 1, 2, 1)
    assert ending.ended_at == assembly.ended_at == closed.data["received_at"]
    assembly.discard()
    assert not sealed.path.exists()


def test_out_of_order_frames_are_written_where_they_arrive(feed: Feed) -> None:
    s = StreamScript("S1")
    a, b, c = pcm_chunks(3)
    feed(s.connected(), s.start())
    feed(s.media(a, seq=2), s.media(c, seq=4), s.media(b, seq=3), s.closed())
    (ending,) = feed.ended
    assert ending.assembly.counts.out_of_order == 1
    assert ending.assembly.counts.gaps == 1
    assert _samples(ending.assembly.seal().path) == a + c + b


def test_interleaved_streams_each_get_their_own_audio_and_hold_commits_back(feed: Feed) -> None:
    one, two = StreamScript("S1"), StreamScript("S2")
    first, second = pcm_chunks(4, seed=1), pcm_chunks(4, seed=2)
    feed(one.connected(), one.start(), two.connected(), two.start())
    for x, y in zip(first, second, strict=True):
        feed(one.media(x), two.media(y))
    (done_two,) = feed(two.closed())
    assert feed.streams.ledger.ackable() == []  # S1 opened at offset 0 and is not archived
    assert feed.streams.archived(done_two) == []  # S2 is, but S1 still holds everything
    (done_one,) = feed(one.closed())
    assert feed.streams.archived(done_one) == [range(0, feed.offset)]
    assert _samples(done_one.assembly.seal().path) == b"".join(first)
    assert _samples(done_two.assembly.seal().path) == b"".join(second)


def test_a_second_copy_of_a_record_changes_nothing(feed: Feed) -> None:
    s = StreamScript("S1")
    chunks = pcm_chunks(2)
    records = [s.connected(), s.start(), s.media(chunks[0]), s.media(chunks[1])]
    feed(*records, records[2], records[3], s.closed())  # a producer retry wrote two again
    (ending,) = feed.ended
    assert ending.assembly.counts.media_frames == 2
    assert ending.assembly.counts.duplicates == 0
    assert _samples(ending.assembly.seal().path) == b"".join(chunks)


def test_the_tail_of_a_stream_archived_before_is_skipped(feed: Feed) -> None:
    old = StreamScript("S0")
    old.connected(), old.start()  # before the committed offset: never read again
    feed(old.media(b"\1\2" * 100), old.closed())
    assert feed.ended == []
    assert feed.streams.skipped == 2
    assert feed.streams.ledger.ackable() == [range(0, 2)]


def test_a_stream_quiet_for_the_quiet_period_is_abandoned_once_a_later_record_shows_it(
    feed: Feed,
) -> None:
    crashed = StreamScript("S1")
    later = StreamScript("S2", started=crashed.at(2) + timedelta(seconds=QUIET) - 2 * crashed.step)
    chunk = pcm_chunks(1)[0]
    feed(crashed.connected(), crashed.start())
    last = crashed.media(chunk)
    feed(last)
    assert feed(later.connected()) == []  # 59.8 s after S1's last record: not yet
    feed(later.start())
    (ending,) = feed(later.media(chunk))  # 60.0 s after it
    assert ending.reason == ABANDONED
    assert ending.ended_at == last.data["received_at"]
    assert ending.assembly.stream_sid == "S1"
    assert _samples(ending.assembly.seal().path) == chunk
    assert feed.streams.open_streams == 1


def test_a_quiet_partition_abandons_all_its_streams_on_the_clock(feed: Feed) -> None:
    s = StreamScript("S1")
    feed(s.connected(), s.start())
    assert not feed.streams.quiet_since(feed.streams._last_read + QUIET - 1)
    assert feed.streams.quiet_since(feed.streams._last_read + QUIET)
    (ending,) = feed.streams.abandon_all()
    assert (ending.reason, ending.assembly.stream_sid) == (ABANDONED, "S1")
    assert ending.assembly.seal().size == 44  # no media: an empty WAV


def test_a_frame_with_bad_base64_is_counted_and_the_stream_goes_on(feed: Feed) -> None:
    s = StreamScript("S1")
    chunk = pcm_chunks(1)[0]
    feed(s.connected(), s.start())
    bad = s.media(b"\0\0")
    bad.data["media"]["payload"] = "AA=A"  # valid for the schema, not for strict base64
    with pytest.raises(BadFrame):
        read_frame(bad.to_bytes()).audio()
    feed(bad, s.media(chunk), s.closed())
    (ending,) = feed.ended
    assert feed.streams.bad == 1
    assert _samples(ending.assembly.seal().path) == chunk


def test_a_record_that_is_no_stream_event_is_bad() -> None:
    with pytest.raises(BadFrame):
        read_frame(b'{"specversion": "1.0"}')
    with pytest.raises(BadFrame):
        read_frame(None)


def test_a_stream_opens_at_connected_or_start_whatever_its_frame_index(feed: Feed) -> None:
    s = StreamScript("S1", frame_index=1)  # the ingress refused frame 0 (bad JSON)
    chunk = pcm_chunks(1)[0]
    start = s.connected(), s.start()
    feed(*start, s.media(chunk), s.closed())
    (ending,) = feed.ended
    assert ending.assembly.started_at == start[1].data["received_at"]
    assert _samples(ending.assembly.seal().path) == chunk


def test_a_tail_holding_the_start_is_built_again_with_the_same_bytes(feed: Feed) -> None:
    s = StreamScript("S1")
    chunks = pcm_chunks(3)
    records = [s.connected(), s.start(), *map(s.media, chunks), s.closed()]
    feed(*records)
    again = Feed(feed.streams._spill)
    again(*records[1:])  # read again from after its connected (the committed offset)
    first, second = feed.ended[0].assembly, again.ended[0].assembly
    try:
        assert first.started_at == second.started_at == records[1].data["received_at"]
        assert first.seal().sha256 == second.seal().sha256
    finally:
        again.close()
