"""Prometheus metrics of the ingress, in a registry of its own (one per app: tests build many).

Labels are bounded: ``kind`` is one of the four kinds or ``unknown``; no tenant, call or secret
ever becomes a label value.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["IngressMetrics"]

_KNOWN_KINDS = frozenset({"popup", "missed-call", "callback", "recording"})


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

    @staticmethod
    def kind_label(kind: str) -> str:
        return kind if kind in _KNOWN_KINDS else "unknown"

    def render(self) -> bytes:
        return generate_latest(self.registry)
