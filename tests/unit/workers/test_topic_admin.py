from __future__ import annotations

import pytest

from topics.catalog import SETTINGS_STATE, WEBHOOK_MISSED_CALL
from workers.errors import PipelineError
from workers.topic_admin import (
    TopicState,
    _raise_for_topic_errors,
    effective_replication,
    find_drift,
)


def _state_matching(spec, replication: int = 1) -> TopicState:
    return TopicState(spec.name, spec.partitions, replication, dict(spec.config()))


def test_a_topic_that_matches_has_no_drift() -> None:
    assert find_drift(WEBHOOK_MISSED_CALL, _state_matching(WEBHOOK_MISSED_CALL), 1) == []


def test_every_difference_is_reported() -> None:
    state = TopicState(
        SETTINGS_STATE.name, 3, 2, {"cleanup.policy": "delete", "min.cleanable.dirty.ratio": "0.1"}
    )
    drift = {d.setting: d for d in find_drift(SETTINGS_STATE, state, 1)}
    assert set(drift) == {"partitions", "replication_factor", "cleanup.policy"}
    assert drift["partitions"].declared == str(SETTINGS_STATE.partitions)
    assert drift["partitions"].actual == "3"
    assert "cleanup.policy is delete, declared compact" in str(drift["cleanup.policy"])


def test_replication_is_capped_at_the_broker_count() -> None:
    assert effective_replication(WEBHOOK_MISSED_CALL, brokers=1, override=None) == 1
    assert effective_replication(WEBHOOK_MISSED_CALL, brokers=5, override=None) == 3
    assert effective_replication(WEBHOOK_MISSED_CALL, brokers=5, override=2) == 2


def test_create_errors_other_than_already_exists_are_raised() -> None:
    response = {
        "topic_errors": [
            {"topic": "a", "error_code": 0},
            {"topic": "b", "error_code": 36, "error_message": "exists"},
        ]
    }
    assert _raise_for_topic_errors(response) == {"b"}
    bad = {"topic_errors": [{"topic": "c", "error_code": 37, "error_message": "bad partitions"}]}
    with pytest.raises(PipelineError, match="c: bad partitions"):
        _raise_for_topic_errors(bad)
