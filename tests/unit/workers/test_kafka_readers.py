"""Readers take every declared partition of the topic's real (prefixed) name."""

from __future__ import annotations

from aiokafka import TopicPartition

from topics.catalog import SETTINGS_STATE
from workers.config import Settings
from workers.kafka import all_partitions


def test_all_partitions_of_a_resolved_topic() -> None:
    spec = Settings(topic_prefix="t1.").topic(SETTINGS_STATE)
    tps = all_partitions(spec)
    assert tps == [TopicPartition(spec.name, p) for p in range(SETTINGS_STATE.partitions)]
    assert {tp.topic for tp in tps} == {"t1." + SETTINGS_STATE.name}
