"""Prometheus metrics of a faust worker, from faust's own sensor hooks (one place for all three).

What faust sees is counted: records consumed per topic, records produced and failed sends per
topic (dead letters are the sends to ``exotel.recording.failed``), the time from a record's
arrival to its acknowledgement (workers ack only once its effects are done), records in flight,
and consumer lag per assigned partition, read at scrape time. The settings worker's outbox sends
through faust's producer directly and reports its sends to these hooks itself. Labels are topic
names and partitions only: never a key, a value, a tenant or anything from the secrets file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from faust.sensors import Sensor
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["PrometheusSensor"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class PrometheusSensor(Sensor):
    """Add with ``app.sensors.add(PrometheusSensor(app, "archiver"))``."""

    def __init__(
        self, app: Any, worker: str, registry: CollectorRegistry = REGISTRY, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.faust_app = app
        self.worker = worker
        labels = ["worker", "topic"]
        self.consumed = Counter(
            "exopipe_worker_consumed", "Records consumed.", labels, registry=registry
        )
        self.produced = Counter(
            "exopipe_worker_produced", "Records produced (acknowledged).", labels, registry=registry
        )
        self.send_failed = Counter(
            "exopipe_worker_send_failed", "Sends that failed.", labels, registry=registry
        )
        self.latency = Histogram(
            "exopipe_worker_processing_seconds",
            "From a record's arrival to its acknowledgement.",
            labels,
            buckets=_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "exopipe_worker_in_flight", "Records consumed, not yet acknowledged.", ["worker"],
            registry=registry,
        )  # fmt: skip
        self._arrived: dict[tuple[Any, int], float] = {}
        registry.register(_LagCollector(app, worker))

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        self.consumed.labels(self.worker, tp.topic).inc()
        self._arrived[(tp, offset)] = time.monotonic()
        self.in_flight.labels(self.worker).set(len(self._arrived))

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        started = self._arrived.pop((tp, offset), None)
        if started is not None:
            self.latency.labels(self.worker, tp.topic).observe(time.monotonic() - started)
        self.in_flight.labels(self.worker).set(len(self._arrived))

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        return topic

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        self.produced.labels(self.worker, str(state or metadata.topic)).inc()

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        self.send_failed.labels(self.worker, str(state)).inc()


class _LagCollector(Collector):
    """Consumer lag per assigned partition: the high watermark minus the next offset to read."""

    def __init__(self, app: Any, worker: str) -> None:
        self._app = app
        self._worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "exopipe_worker_consumer_lag",
            "Records on the broker this worker has not read yet, per assigned partition.",
            labels=["worker", "topic", "partition"],
        )
        try:
            consumer = self._app.consumer
            assigned = consumer.assignment()
            read = getattr(consumer, "_read_offset", {})
            for tp in sorted(assigned):
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                last = read.get(tp)
                lag = highwater - (last + 1 if last is not None else 0)
                family.add_metric([self._worker, tp.topic, str(tp.partition)], max(0, lag))
        except Exception:  # noqa: BLE001, S110 - a scrape must never fail because faust is starting
            pass
        yield family
