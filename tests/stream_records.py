"""Records of one live stream as the ingress writes them to ``exotel.stream.audio``, for tests.

:class:`StreamScript` builds each connection's records in order with ``make_event`` (so every one
is schema-checked): ``frame_index`` from 0, the continuity of each sequence number against the
highest one seen (ok, gap, duplicate, out_of_order, unchecked), and a ``closed`` record with the
counters. It is a stand-in for the ingress where a test needs exact control of the records.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from topics.catalog import STREAM_AUDIO
from topics.events import CloudEvent, deterministic_id, format_time, make_event

__all__ = ["StreamScript", "pcm_chunks"]


def pcm_chunks(frames: int, *, chunk_bytes: int = 3200, seed: int = 1) -> list[bytes]:
    """``frames`` chunks of 16-bit PCM (3.2 KB, Exotel's smallest chunk, by default), each one
    different and the same for the same seed, so a sample check can tell them apart."""
    rng = random.Random(seed)
    return [rng.randbytes(chunk_bytes) for _ in range(frames)]


@dataclass
class StreamScript:
    """One connection of ``stream_sid``; each method returns the next record's event."""

    stream_sid: str
    customer_id: str = "acme"
    app_id: str = "app1"
    started: datetime = field(default_factory=lambda: datetime(2025, 3, 1, 10, 0, tzinfo=UTC))
    step: timedelta = timedelta(milliseconds=100)
    connection_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    frame_index: int = 0
    _highest: int = 0
    _seen: set[int] = field(default_factory=set)
    _counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "frames",
                "media_frames",
                "media_bytes",
                "gaps",
                "missing",
                "duplicates",
                "out_of_order",
            ),
            0,
        )  # fmt: skip
    )

    def at(self, index: int) -> datetime:
        return self.started + self.step * index

    def connected(self) -> CloudEvent:
        return self._record("connected", {}, None)

    def start(
        self, call_sid: str = "CA1", *, sample_rate: int = 8000, encoding: str = "base64"
    ) -> CloudEvent:
        body = {
            "start": {
                "call_sid": call_sid,
                "account_sid": self.customer_id,
                "from": "+919800000001",
                "to": "08047491899",
                "custom_parameters": {"campaign": "test"},
                "media_format": {
                    "encoding": encoding,
                    "sample_rate": sample_rate,
                    "bit_rate": "128kbps",
                },
            }
        }
        return self._record("start", body, self._next_seq())

    def media(
        self,
        audio: bytes,
        *,
        seq: int | None = None,
        chunk: int | None = None,
        track: str | None = None,
        timestamp_ms: int | None = -1,
    ) -> CloudEvent:
        """A media frame; ``seq`` defaults to the next number (give one to make a gap or copy),
        ``timestamp_ms`` to 100 ms per record so far (None: a frame without one)."""
        seq = self._next_seq() if seq is None else seq
        body = {
            "media": {
                "chunk": chunk if chunk is not None else seq,
                "timestamp_ms": self.frame_index * 100 if timestamp_ms == -1 else timestamp_ms,
                "track": track,
                "payload": base64.b64encode(audio).decode(),
                "size_bytes": len(audio),
            }
        }
        return self._record("media", body, seq)

    def stop(self, reason: str = "callended") -> CloudEvent:
        body = {"stop": {"reason": reason, "call_sid": "CA1", "account_sid": self.customer_id}}
        return self._record("stop", body, self._next_seq())

    def closed(self, reason: str = "stop_received", close_code: int = 1000) -> CloudEvent:
        body = {
            "closed": {
                "reason": reason,
                "close_code": close_code,
                "started_at": format_time(self.started),
                **self._counts,
                "rejected": 0,
                "lost": 0,
            }
        }
        return self._record("closed", body, None)

    def _next_seq(self) -> int:
        return self._highest + 1

    def _continuity(self, seq: int | None) -> dict[str, Any]:
        if seq is None:
            return {"status": "unchecked", "expected": None, "missing": 0}
        expected = self._highest + 1
        if seq == expected:
            status, missing = "ok", 0
        elif seq > expected:
            status, missing = "gap", seq - expected
        elif seq in self._seen:
            status, missing = "duplicate", 0
        else:
            status, missing = "out_of_order", 0
        self._seen.add(seq)
        self._highest = max(self._highest, seq)
        return {"status": status, "expected": expected, "missing": missing}

    def _record(self, event: str, body: dict[str, Any], seq: int | None) -> CloudEvent:
        continuity = self._continuity(seq)
        counts = self._counts
        if event != "closed":
            counts["frames"] += 1
        if event == "media":
            counts["media_frames"] += 1
            counts["media_bytes"] += body["media"]["size_bytes"]
        counts["gaps"] += continuity["status"] == "gap"
        counts["missing"] += continuity["missing"]
        counts["duplicates"] += continuity["status"] == "duplicate"
        counts["out_of_order"] += continuity["status"] == "out_of_order"
        data = {
            "stream_sid": self.stream_sid,
            "customer_id": self.customer_id,
            "app_id": self.app_id,
            "connection_id": self.connection_id,
            "frame_index": self.frame_index,
            "sequence_number": seq,
            "received_at": format_time(self.at(self.frame_index)),
            "continuity": continuity,
            "event": event,
            **body,
        }
        index = self.frame_index
        self.frame_index += 1
        return make_event(
            STREAM_AUDIO,
            data,
            source=f"/ingress/{self.customer_id}/{self.app_id}/stream",
            event_id=deterministic_id("stream", self.connection_id, str(index)),
            time=self.at(index),
            customer_id=self.customer_id,
            app_id=self.app_id,
        )
