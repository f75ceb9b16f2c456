"""Prometheus metrics of the ingress, in a registry of its own (one per app: tests build many).

Labels are bounded: ``kind`` is one of the four kinds, ``stream``, ``stream-url`` or
``unknown``; a stream's ``event``, ``reason`` and ``status`` come from fixed sets; no tenant,
call, stream or secret ever becomes a label value.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["IngressMetrics"]

_KNOWN_KINDS = frozenset({"popup", "missed-call", "callback", "recording", "stream", "stream-url"})


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "exopipe_ingress_requests",
            "Webhook requests answered, by kind and HTTP status.",
            ["kind", "status"],
            registry=r,
        )
        self.produce_seconds = Histogram(
            "exopipe_ingress_produce_seconds",
            "From handing a record to the sink to its Kafka ack or spool fsync.",
            ["outcome"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10),
            registry=r,
        )
        self.rejected = Counter(
            "exopipe_ingress_rejected",
            "Requests refused, by reason (auth and rate limits included; no record for those).",
            ["reason"],
            registry=r,
        )
        self.spooled = Counter(
            "exopipe_ingress_spooled", "Records written to the spool.", registry=r
        )
        self.drained = Counter(
            "exopipe_ingress_drained", "Spooled records acknowledged by Kafka.", registry=r
        )
        self.spool_depth = Gauge(
            "exopipe_ingress_spool_depth", "Records in the spool now.", registry=r
        )
        self.spool_bytes = Gauge(
            "exopipe_ingress_spool_bytes", "Bytes in the spool now.", registry=r
        )

        self.streams_open = Gauge(
            "exopipe_ingress_streams_open", "Live audio streams connected now.", registry=r
        )
        self.stream_frames = Counter(
            "exopipe_ingress_stream_frames",
            "Stream records delivered (to Kafka or the spool), by event (closed included).",
            ["event"],
            registry=r,
        )
        self.stream_rejected = Counter(
            "exopipe_ingress_stream_rejected",
            "Stream frames refused (each has a record on exotel.webhook.rejected), by reason.",
            ["reason"],
            registry=r,
        )
        self.stream_continuity = Counter(
            "exopipe_ingress_stream_continuity",
            "Forwarded frames whose sequence_number was not the next one, by status.",
            ["status"],
            registry=r,
        )
        self.stream_missing = Counter(
            "exopipe_ingress_stream_missing",
            "Sequence numbers skipped by gaps in streams.",
            registry=r,
        )
        self.stream_lost = Counter(
            "exopipe_ingress_stream_lost",
            "Stream frames read that reached neither Kafka nor the spool (spool full), and closed "
            "records that could not be kept (record=closed).",
            ["record"],
            registry=r,
        )
        self.streams_closed = Counter(
            "exopipe_ingress_streams_closed",
            "Streams ended, by the reason in their closed record.",
            ["reason"],
            registry=r,
        )
        self.stream_frame_seconds = Histogram(
            "exopipe_ingress_stream_frame_seconds",
            "From reading a stream frame to its records delivered (Kafka ack or spool fsync).",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )

        # Label children looked up once: ``labels()`` takes a lock and builds a key per call.
        self._answered: dict[tuple[str, int], Any] = {}
        self._produced: dict[str, Any] = {}
        self._streamed: dict[str, Any] = {}

    def answered(self, kind: str, status: int) -> None:
        """Count one answer of ``status`` to a webhook of ``kind`` (any string from the URL)."""
        key = (self.kind_label(kind), status)  # the label, not the URL's text: a bounded cache
        child = self._answered.get(key)
        if child is None:
            child = self._answered[key] = self.requests.labels(key[0], str(status))
        child.inc()

    def produced(self, outcome: str, seconds: float) -> None:
        """Observe one record's time to its Kafka ack or spool fsync."""
        child = self._produced.get(outcome)
        if child is None:
            child = self._produced[outcome] = self.produce_seconds.labels(outcome)
        child.observe(seconds)

    def streamed(self, event: str, seconds: float | None = None) -> None:
        """Count one stream record delivered; ``seconds`` from its frame's read, when a frame."""
        child = self._streamed.get(event)
        if child is None:
            child = self._streamed[event] = self.stream_frames.labels(event)
        child.inc()
        if seconds is not None:
            self.stream_frame_seconds.observe(seconds)

    @staticmethod
    def kind_label(kind: str) -> str:
        return kind if kind in _KNOWN_KINDS else "unknown"

    def render(self) -> bytes:
        return generate_latest(self.registry)
