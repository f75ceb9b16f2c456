from __future__ import annotations

import pytest

from topics.catalog import CATALOG, SETTINGS_STATE, by_name
from topics.schemas import load_schema, violations

CONTRACT = [
    "exotel.webhook.incoming_call",
    "exotel.webhook.missed_call",
    "exotel.webhook.call_status",
    "exotel.webhook.recording_ready",
    "exotel.webhook.rejected",
    "exotel.missed_call.enriched",
    "exotel.recording.archived",
    "exotel.recording.failed",
    "exotel.settings.command",
    "exotel.settings.result",
    "exotel.settings.state",
    "exotel.stream.audio",
    "exotel.stream.event",
    "exotel.stream.archived",
]


def test_catalog_names_are_the_public_contract() -> None:
    assert [spec.name for spec in CATALOG] == CONTRACT


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.name)
def test_every_topic_has_a_valid_schema_and_a_declared_shape(spec) -> None:
    schema = load_schema(spec.schema)
    assert schema["type"] == "object"
    assert schema["required"], "a schema that requires nothing accepts anything"
    assert spec.partitions >= 1
    assert spec.cleanup_policy in {"delete", "compact"}
    assert spec.event_type.startswith("com.exotel.pipeline.")


def test_settings_state_is_compacted_and_kept_forever() -> None:
    assert SETTINGS_STATE.cleanup_policy == "compact"
    assert SETTINGS_STATE.retention_ms is None
    assert SETTINGS_STATE.config()["cleanup.policy"] == "compact"
    assert "retention.ms" not in SETTINGS_STATE.config()


def test_call_keyed_topics_are_co_partitioned() -> None:
    call_keyed = [spec for spec in CATALOG if spec.key == "call_sid"]
    assert len({spec.partitions for spec in call_keyed}) == 1


def test_unknown_topic_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="exotel.webhook.nope"):
        by_name("exotel.webhook.nope")


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.name)
def test_every_schema_carries_an_example_that_it_accepts(spec) -> None:
    examples = load_schema(spec.schema).get("examples")
    assert examples, f"{spec.schema} has no example"
    for example in examples:
        assert violations(spec, example) == []


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.name)
def test_every_schema_refuses_what_it_does_not_know(spec) -> None:
    example = dict(load_schema(spec.schema)["examples"][0])
    example["surely_not_a_field"] = 1
    assert violations(spec, example), f"{spec.schema} accepts unknown fields"
