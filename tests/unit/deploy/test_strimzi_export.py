"""``exopipe topics export --format strimzi``: the catalog as KafkaTopic resources."""

from __future__ import annotations

import pytest
import yaml

from topics.catalog import CATALOG
from workers.cli import main
from workers.strimzi import resource_name


def test_export_prints_one_kafka_topic_per_catalog_entry(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXOPIPE_TOPIC_PREFIX", "staging.")
    assert (
        main(["topics", "export", "--format", "strimzi", "--cluster", "prod", "--replicas", "2"])
        == 0
    )
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["spec"]["topicName"] for d in docs] == [f"staging.{s.name}" for s in CATALOG]
    for doc, spec in zip(docs, CATALOG, strict=True):
        assert doc["kind"] == "KafkaTopic"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "prod"
        assert doc["metadata"]["name"] == resource_name(f"staging.{spec.name}")
        assert "_" not in doc["metadata"]["name"]
        assert doc["spec"]["replicas"] == 2
        assert doc["spec"]["partitions"] == spec.partitions
        assert doc["spec"]["config"] == spec.config()
