"""The WAV header: what Python's own reader (and the RIFF layout) makes of it."""

from __future__ import annotations

import io
import struct
import wave

import pytest

from workers.stream_archiver.wav import MULAW, PCM_S16LE, AudioFormat, format_of, wav_header


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_a_pcm_header_reads_back_with_the_wave_module(rate: int) -> None:
    audio = bytes(range(256)) * 10
    blob = wav_header(AudioFormat(PCM_S16LE, rate), len(audio)) + audio
    assert len(blob) - len(audio) == 44
    with wave.open(io.BytesIO(blob)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, rate)
        assert wav.getnframes() == len(audio) // 2
        assert wav.readframes(wav.getnframes()) == audio
    riff, size, wave_id = struct.unpack("<4sI4s", blob[:12])
    assert (riff, size, wave_id) == (b"RIFF", len(blob) - 8, b"WAVE")


def test_a_mulaw_header_is_format_7_with_a_fact_chunk() -> None:
    audio = b"\xff\x7f" * 400 + b"\x01"  # an odd count: one pad byte follows the data
    header = wav_header(AudioFormat(MULAW, 8000), len(audio))
    assert len(header) == AudioFormat(MULAW).header_size == 58
    riff, size, wave_id = struct.unpack("<4sI4s", header[:12])
    assert (riff, wave_id) == (b"RIFF", b"WAVE")
    assert size == len(header) + len(audio) + 1 - 8
    tag, fmt_size, fmt_tag, channels, rate, byte_rate, align, bits, extra = struct.unpack(
        "<4sIHHIIHHH", header[12:38]
    )
    assert (tag, fmt_size, fmt_tag, channels, rate) == (b"fmt ", 18, 7, 1, 8000)
    assert (byte_rate, align, bits, extra) == (8000, 1, 8, 0)
    assert struct.unpack("<4sII", header[38:50]) == (b"fact", 4, len(audio))
    assert struct.unpack("<4sI", header[50:58]) == (b"data", len(audio))


def test_an_odd_pcm_size_counts_its_pad_byte_in_the_riff_size_only() -> None:
    header = wav_header(AudioFormat(), 3)
    assert struct.unpack("<I", header[4:8])[0] == 44 + 3 + 1 - 8
    assert struct.unpack("<I", header[40:44])[0] == 3


@pytest.mark.parametrize(
    ("media_format", "expected"),
    [
        (None, AudioFormat(PCM_S16LE, 8000)),
        ({"encoding": "base64", "sample_rate": 16000}, AudioFormat(PCM_S16LE, 16000)),
        ({"encoding": "audio/L16;rate=24000", "sample_rate": 24000}, AudioFormat(PCM_S16LE, 24000)),
        ({"encoding": "audio/x-mulaw;rate=8000", "sample_rate": 8000}, AudioFormat(MULAW, 8000)),
        ({"encoding": "ULAW", "sample_rate": 8000}, AudioFormat(MULAW, 8000)),
    ],
)
def test_the_start_frames_media_format_names_the_wav_format(
    media_format: dict[str, object] | None, expected: AudioFormat
) -> None:
    assert format_of(media_format) == expected


def test_duration_comes_from_the_sample_count() -> None:
    assert AudioFormat(PCM_S16LE, 8000).duration_ms(16000) == 1000
    assert AudioFormat(MULAW, 8000).duration_ms(16000) == 2000
    assert AudioFormat(PCM_S16LE, 16000).duration_ms(3200) == 100
