"""The WAV container of an archived stream: its sample format and its RIFF header.

Exotel sends base64 of raw 16-bit little-endian mono PCM (WAV format 1) unless the applet is set
to G.711 mu-law (``audio/x-mulaw``), kept as is in WAV format 7. A stream of one track is a mono
WAV; ``track: both`` is two channels, interleaved sample by sample (inbound first). The header is
written once the stream ends, when the data size is known; its length depends only on the
format, so each spill file reserves it when it is created.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_SAMPLE_RATE", "MULAW", "PCM_S16LE", "AudioFormat", "format_of", "wav_header"]

PCM_S16LE = "pcm_s16le"
MULAW = "mulaw"
DEFAULT_SAMPLE_RATE = 8000
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_MULAW = 7


@dataclass(frozen=True)
class AudioFormat:
    """How a stream's bytes are samples: ``encoding`` is ``pcm_s16le`` or ``mulaw``."""

    encoding: str = PCM_S16LE
    sample_rate: int = DEFAULT_SAMPLE_RATE

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.encoding == MULAW else 2

    @property
    def header_size(self) -> int:
        # PCM: RIFF(12) fmt(8+16) data(8). mu-law: fmt(8+18, with cbSize) and a fact chunk (8+4),
        # which the WAV spec asks of every format other than PCM.
        return 58 if self.encoding == MULAW else 44

    def duration_ms(self, data_bytes: int, channels: int = 1) -> int:
        return data_bytes // (self.bytes_per_sample * channels) * 1000 // self.sample_rate


def format_of(media_format: dict[str, Any] | None) -> AudioFormat:
    """The format a start frame's ``media_format`` names; PCM at 8 kHz when there is none.

    Exotel's docs name the encoding ``base64`` (of raw PCM) or, with extended options,
    ``audio/x-mulaw;rate=8000`` or ``audio/L16;rate=16000``: anything naming mu-law is mu-law.
    """
    if not media_format:
        return AudioFormat()
    name = str(media_format.get("encoding") or "").lower()
    encoding = MULAW if "mulaw" in name or "ulaw" in name else PCM_S16LE
    return AudioFormat(encoding, int(media_format.get("sample_rate") or DEFAULT_SAMPLE_RATE))


def wav_header(audio: AudioFormat, data_bytes: int, channels: int = 1) -> bytes:
    """The header for ``data_bytes`` of audio; an odd data size is followed by one pad byte."""
    pad = data_bytes & 1
    width = audio.bytes_per_sample
    block = width * channels  # one sample of every channel
    if audio.encoding == MULAW:
        fmt = struct.pack(
            "<4sIHHIIHHH", b"fmt ", 18, _WAVE_FORMAT_MULAW, channels, audio.sample_rate,
            audio.sample_rate * block, block, 8 * width, 0,
        )  # fmt: skip
        fmt += struct.pack("<4sII", b"fact", 4, data_bytes // block)
    else:
        fmt = struct.pack(
            "<4sIHHIIHH", b"fmt ", 16, _WAVE_FORMAT_PCM, channels, audio.sample_rate,
            audio.sample_rate * block, block, 8 * width,
        )  # fmt: skip
    riff_size = 4 + len(fmt) + 8 + data_bytes + pad
    header = struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE") + fmt
    return header + struct.pack("<4sI", b"data", data_bytes)
