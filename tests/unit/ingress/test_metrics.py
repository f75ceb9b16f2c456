"""The ingress's counters: one child per (kind label, status), whatever kinds the URLs carry."""

from __future__ import annotations

from workers.ingress.metrics import IngressMetrics


def test_answers_are_counted_by_kind_label_and_status():
    metrics = IngressMetrics()
    for _ in range(3):
        metrics.answered("popup", 200)
    metrics.answered("missed-call", 503)
    for n in range(100):
        metrics.answered(f"no-such-kind-{n}", 404)
    text = metrics.render().decode()
    assert 'exopipe_ingress_requests_total{kind="popup",status="200"} 3.0' in text
    assert 'exopipe_ingress_requests_total{kind="missed-call",status="503"} 1.0' in text
    assert 'exopipe_ingress_requests_total{kind="unknown",status="404"} 100.0' in text
    assert len(metrics._answered) == 3  # a stranger's URLs cannot grow the cache


def test_produce_times_are_observed_by_outcome():
    metrics = IngressMetrics()
    metrics.produced("kafka", 0.004)
    metrics.produced("kafka", 0.3)
    metrics.produced("spooled", 1.2)
    text = metrics.render().decode()
    assert 'exopipe_ingress_produce_seconds_count{outcome="kafka"} 2.0' in text
    assert 'exopipe_ingress_produce_seconds_bucket{le="0.005",outcome="kafka"} 1.0' in text
    assert 'exopipe_ingress_produce_seconds_count{outcome="spooled"} 1.0' in text
