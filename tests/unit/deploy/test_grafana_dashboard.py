"""deploy/grafana: every metric the dashboard queries is one the code exports."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from workers import json_codec, retry
from workers.ingress.metrics import IngressMetrics
from workers.plumbing.worker_metrics import PrometheusSensor

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "exopipe-dashboard.json"


class _NoApp:
    consumer = None


def _exported() -> set[str]:
    names: set[str] = set()
    registries = [IngressMetrics().registry, CollectorRegistry()]
    PrometheusSensor(_NoApp(), "w", registry=registries[1])
    for registry in registries:
        for family in registry.collect():
            names |= {sample.name for sample in family.samples} | {family.name}
    return names | {retry.RETRIES._name, retry.EXHAUSTED._name}


def test_every_queried_metric_exists() -> None:
    dashboard = json_codec.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {m for e in exprs for m in re.findall(r"\bexopipe_[a-z_]+", e)}
    assert len(queried) >= 8
    exported = _exported()
    # Labelled series appear once used; the family name (no _total/_bucket) proves them.
    missing = {
        m
        for m in queried
        if not {m, m.removesuffix("_total"), m.removesuffix("_bucket")} & exported
    }
    assert missing == set()
