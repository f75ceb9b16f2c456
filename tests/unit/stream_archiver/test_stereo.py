"""``track: both`` into a two-channel WAV: inbound on channel 1, outbound on channel 2, placed by
each frame's timestamp, silence where a track has no frame; a stream of one track stays mono."""

from __future__ import annotations

import io
import struct
import wave
from array import array
from typing import Any

import pytest

from tests.stream_records import StreamScript, pcm_chunks
from tests.unit.stream_archiver.conftest import Feed
from topics.events import CloudEvent
from workers.stream_archiver import stereo
from workers.stream_archiver.assembly import Sealed

CHUNK = 3200  # 200 ms at 8 kHz, 16-bit
SILENCE = bytes(CHUNK)


def _channels(sealed: Sealed) -> tuple[bytes, bytes]:
    """Channel 1 and channel 2 of a 16-bit stereo WAV, read with Python's ``wave`` module."""
    with wave.open(io.BytesIO(sealed.path.read_bytes())) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        samples = array("h", wav.readframes(wav.getnframes()))
    return samples[0::2].tobytes(), samples[1::2].tobytes()


def _mono(sealed: Sealed) -> bytes:
    with wave.open(io.BytesIO(sealed.path.read_bytes())) as wav:
        assert wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


def _both(
    s: StreamScript, inbound: list[bytes | None], outbound: list[bytes | None], *, first: int = 0
) -> list[CloudEvent]:
    """Media records as the double sends ``track: both``: per chunk inbound then outbound, one
    timestamp (the chunk's end); ``None``: that track's frame of that chunk never came. ``first``:
    chunks before these."""
    records = []
    lost = 0  # sequence numbers of frames that never came: the next frame shows a gap
    for n, (a, b) in enumerate(zip(inbound, outbound, strict=True), start=first + 1):
        ts = n * 200
        for track, pcm in (("inbound", a), ("outbound", b)):
            if pcm is None:
                lost += 1
                continue
            seq = s._highest + 1 + lost
            records.append(s.media(pcm, seq=seq, track=track, timestamp_ms=ts, chunk=n))
            lost = 0
    return records


def _opened(**start: Any) -> tuple[StreamScript, list[CloudEvent]]:
    """A stream and its connected and start records, built first (records come in order)."""
    s = StreamScript("S1")
    return s, [s.connected(), s.start(**start)]


def _archive(
    feed: Feed, s: StreamScript, opening: list[CloudEvent], media: list[CloudEvent]
) -> Sealed:
    feed(*opening, *media, s.stop(), s.closed())
    return feed.ended[-1].assembly.seal()


def test_both_tracks_become_two_aligned_channels(feed: Feed) -> None:
    caller, agent = pcm_chunks(6, seed=1), pcm_chunks(6, seed=2)
    s, opening = _opened()
    sealed = _archive(feed, s, opening, _both(s, caller, agent))
    assert _channels(sealed) == (b"".join(caller), b"".join(agent))
    assert (sealed.channels, sealed.data_bytes) == (2, 2 * 6 * CHUNK)
    assert sealed.size == 44 + 2 * 6 * CHUNK
    assert sealed.duration_ms == 6 * 200
    header = sealed.path.read_bytes()[:44]
    # fmt: channels 2, byte rate and block align for two 16-bit samples per frame
    assert struct.unpack("<HHIIHH", header[20:36]) == (1, 2, 8000, 32000, 4, 16)
    assert feed.ended[-1].assembly.counts.media_frames == 12


def test_a_track_s_missing_frames_are_silence_and_the_channels_stay_aligned(feed: Feed) -> None:
    caller, agent = pcm_chunks(6, seed=1), pcm_chunks(6, seed=2)
    sent_agent: list[bytes | None] = [*agent[:2], None, None, *agent[4:]]
    sent_caller: list[bytes | None] = [caller[0], None, *caller[2:]]
    s, opening = _opened()
    sealed = _archive(feed, s, opening, _both(s, sent_caller, sent_agent))
    left, right = _channels(sealed)
    assert left == caller[0] + SILENCE + b"".join(caller[2:])
    assert right == agent[0] + agent[1] + SILENCE * 2 + agent[4] + agent[5]
    counts = feed.ended[-1].assembly.counts
    assert (counts.media_frames, counts.gaps, counts.missing) == (9, 3, 3)  # in4 between out3, out4


def test_unequal_tracks_are_padded_with_silence_at_either_end(feed: Feed) -> None:
    caller, agent = pcm_chunks(5, seed=1), pcm_chunks(5, seed=2)
    sent_agent: list[bytes | None] = [None, None, agent[2], agent[3], None]  # late, and ends early
    s, opening = _opened()
    sealed = _archive(feed, s, opening, _both(s, list(caller), sent_agent))
    left, right = _channels(sealed)
    assert left == b"".join(caller)
    assert right == SILENCE * 2 + agent[2] + agent[3] + SILENCE
    assert sealed.duration_ms == 5 * 200


def test_the_agent_track_longer_than_the_caller_s_sets_the_length(feed: Feed) -> None:
    caller, agent = pcm_chunks(2, seed=1), pcm_chunks(4, seed=2)
    s, opening = _opened()
    sealed = _archive(feed, s, opening, _both(s, [*caller, None, None], list(agent)))
    assert _channels(sealed) == (b"".join(caller) + SILENCE * 2, b"".join(agent))


def test_a_duplicate_frame_of_a_track_is_not_written(feed: Feed) -> None:
    caller, agent = pcm_chunks(3, seed=1), pcm_chunks(3, seed=2)
    s, opening = _opened()
    media = _both(s, caller[:2], agent[:2])
    again = s.media(agent[1], seq=s._highest, track="outbound", timestamp_ms=400)  # sent twice
    sealed = _archive(feed, s, opening, [*media, again, *_both(s, caller[2:], agent[2:], first=2)])
    assert _channels(sealed) == (b"".join(caller), b"".join(agent))
    assert feed.ended[-1].assembly.counts.duplicates == 1


def test_millisecond_timestamps_do_not_shift_a_sample_at_24_khz(feed: Feed) -> None:
    # 3,200 bytes at 24 kHz last 66.67 ms: the timestamps are rounded, the audio follows on.
    caller, agent = pcm_chunks(9, seed=1), pcm_chunks(9, seed=2)
    s, opening = _opened(sample_rate=24000)
    media = []
    for n, (a, b) in enumerate(zip(caller, agent, strict=True)):
        ts = round((n + 1) * 1600 * 1000 / 24000)
        media += [s.media(a, track="inbound", timestamp_ms=ts),
                  s.media(b, track="outbound", timestamp_ms=ts)]  # fmt: skip
    sealed = _archive(feed, s, opening, media)
    assert _channels(sealed) == (b"".join(caller), b"".join(agent))


def test_mulaw_both_tracks_is_a_two_channel_format_7_wav(feed: Feed) -> None:
    caller, agent = pcm_chunks(3, chunk_bytes=1600, seed=1), pcm_chunks(3, chunk_bytes=1600, seed=2)
    s, opening = _opened(encoding="audio/x-mulaw;rate=8000")
    sealed = _archive(feed, s, opening, _both(s, list(caller), list(agent)))
    blob = sealed.path.read_bytes()
    assert struct.unpack("<HHIIHH", blob[20:36]) == (7, 2, 8000, 16000, 2, 8)
    assert struct.unpack("<4sII", blob[38:50]) == (b"fact", 4, 3 * 1600)  # samples per channel
    assert struct.unpack("<4sI", blob[50:58]) == (b"data", 2 * 3 * 1600)
    data = blob[58:]
    assert (data[0::2], data[1::2]) == (b"".join(caller), b"".join(agent))
    assert sealed.duration_ms == 600


@pytest.mark.parametrize("track", [None, "inbound", "outbound"])
def test_a_stream_of_one_track_stays_mono_and_joins_its_gaps(feed: Feed, track: str | None) -> None:
    chunks = pcm_chunks(4)
    s, opening = _opened()
    # Timestamps that jump (a lost frame): a mono WAV is its audio as it arrived, as before.
    media = [s.media(c, track=track, timestamp_ms=ts)
             for c, ts in zip(chunks, (200, 400, 1000, 1200), strict=True)]  # fmt: skip
    sealed = _archive(feed, s, opening, media)
    assert sealed.channels == 1
    assert _mono(sealed) == b"".join(chunks)
    assert sealed.size == 44 + 4 * CHUNK


def test_the_same_records_give_the_same_bytes_and_no_file_is_left(feed: Feed) -> None:
    caller, agent = pcm_chunks(4, seed=1), pcm_chunks(4, seed=2)
    s = StreamScript("S1")
    records = [s.connected(), s.start(), *_both(s, [*caller[:3], None], agent), s.closed()]
    feed(*records)
    again = Feed(feed.streams._spill)
    again(*records)
    first, second = feed.ended[0].assembly, again.ended[0].assembly
    try:
        assert first.seal().sha256 == second.seal().sha256
    finally:
        again.close()
    first.discard()
    assert list(feed.streams._spill.path.glob("*.wav")) == []


def test_interleaving_streams_in_blocks_across_the_silences(
    feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stereo, "BLOCK_SAMPLES", 333)  # blocks that straddle every boundary
    caller, agent = pcm_chunks(7, seed=1), pcm_chunks(7, seed=2)
    sent_agent: list[bytes | None] = [agent[0], None, agent[2], None, None, agent[5], None]
    s, opening = _opened()
    sealed = _archive(feed, s, opening, _both(s, list(caller), sent_agent))
    left, right = _channels(sealed)
    assert left == b"".join(caller)
    assert right == agent[0] + SILENCE + agent[2] + SILENCE * 2 + agent[5] + SILENCE


def test_frames_without_timestamps_follow_on_in_their_track(feed: Feed) -> None:
    caller, agent = pcm_chunks(2, seed=1), pcm_chunks(3, seed=2)
    s, opening = _opened()
    media = [s.media(caller[0], track="inbound", timestamp_ms=None),
             *(s.media(a, track="outbound", timestamp_ms=None) for a in agent),
             s.media(caller[1], track="inbound", timestamp_ms=None)]  # fmt: skip
    sealed = _archive(feed, s, opening, media)
    assert _channels(sealed) == (b"".join(caller) + SILENCE, b"".join(agent))
