"""The stream archiver's own Prometheus metrics (served on the worker's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["OPEN_STREAMS", "RECORDS_SKIPPED", "STREAMS_ARCHIVED"]

STREAMS_ARCHIVED = Counter(
    "exopipe_stream_archiver_streams",
    "Streams archived as one WAV, by how they ended; already_archived: found in S3, not written.",
    ["end_reason", "already_archived"],
)
RECORDS_SKIPPED = Counter(
    "exopipe_stream_archiver_records_skipped",
    "Records not taken into a WAV: archived_before (a tail read again after a restart), "
    "bad (not a valid exotel.stream.audio record, or audio that is not base64).",
    ["reason"],
)
OPEN_STREAMS = Gauge(
    "exopipe_stream_archiver_open_streams",
    "Streams being assembled or archived by this worker (each holds its partition's commits).",
)
