from __future__ import annotations

import os

import pytest
from jsonschema import Draft202012Validator

from topics.catalog import WEBHOOK_INCOMING_CALL
from topics.fastcheck import compile_check, is_type
from topics.schemas import (
    SchemaViolation,
    load_schema,
    quick_check_for,
    validate_data,
    validator_for,
    violations,
)

FORMATS = Draft202012Validator.FORMAT_CHECKER
SAMPLES = [None, True, False, 0, 1, -1, 1.0, 1.5, 2**70, "", "x", [], [1], {}, {"a": 1}]


@pytest.mark.parametrize(
    "name", ["array", "boolean", "integer", "null", "number", "object", "string"]
)
def test_types_are_the_validators_types(name: str) -> None:
    for value in SAMPLES:
        assert is_type(value, name) == Draft202012Validator.TYPE_CHECKER.is_type(value, name), value


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/x"},
        {"oneOf": [{"type": "string"}]},
        {"type": "string", "maxLength": 3, "anyOf": []},
        {"properties": {"a": {"not": {}}}},
        {"enum": [1, "a"]},
        {"const": 1},
        {"type": "decimal"},
        {"items": {"type": "string"}, "prefixItems": []},
        {"additionalProperties": False, "patternProperties": {"^a": {}}},
        {"type": "string", "minLength": True},
        {"type": ["string", "null"], "maxLength": 1.5},
    ],
)
def test_a_keyword_it_does_not_implement_is_not_compiled(schema: dict) -> None:
    assert compile_check(schema, FORMATS) is None


def test_every_topic_schema_compiles() -> None:
    for name in sorted(os.listdir("topics/schemas")):
        assert compile_check(load_schema(name), FORMATS) is not None, name


def test_edges_of_each_keyword() -> None:
    check = compile_check(
        {
            "type": "object",
            "properties": {
                "s": {"type": "string", "minLength": 1, "maxLength": 2, "pattern": "^a"},
                "n": {"type": ["integer", "null"], "minimum": 0},
                "t": {"format": "date-time"},
                "e": {"enum": ["x", "y"]},
                "l": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["s"],
            "additionalProperties": False,
            "minProperties": 1,
        },
        FORMATS,
    )
    assert check is not None
    assert check({"s": "ab", "n": 0, "t": "2024-06-15T10:30:00Z", "e": "y", "l": ["a"]})
    assert check({"s": "a", "n": 1.0})
    # Formats are checked as jsonschema checks them (date-time needs a package not installed).
    assert check({"s": "a", "t": "x"}) == FORMATS.conforms("x", "date-time")
    for bad in (
        {},
        {"s": ""},
        {"s": "abc"},
        {"s": "ba"},
        {"s": 1},
        {"s": "a", "n": -1},
        {"s": "a", "n": True},
        {"s": "a", "n": 1.5},
        {"s": "a", "e": "z"},
        {"s": "a", "l": [1]},
        {"s": "a", "other": 1},
        [],
    ):
        assert not check(bad), bad


def test_invalid_data_still_gets_jsonschemas_errors() -> None:
    name = WEBHOOK_INCOMING_CALL.schema
    data = dict(load_schema(name)["examples"][0], call_sid=7)
    del data["to"]
    assert not quick_check_for(name)(data)
    with pytest.raises(SchemaViolation) as caught:
        validate_data(WEBHOOK_INCOMING_CALL, data)
    assert caught.value.errors == violations(WEBHOOK_INCOMING_CALL, data)
    assert caught.value.errors == [
        "(root): 'to' is a required property",
        "call_sid: 7 is not of type 'string'",
    ]
    assert not validator_for(name).is_valid(data)


@pytest.mark.parametrize("kind", [["string", "null"], ["null", "string"]])
def test_a_nullable_text_field(kind: list[str]) -> None:
    schema = {"type": kind, "minLength": 1, "maxLength": 2, "description": "x"}
    check = compile_check(schema, FORMATS)
    assert check is not None
    validator = Draft202012Validator(schema)
    for value in (None, "", "a", "ab", "abc", 1, [], True):
        assert check(value) == validator.is_valid(value), value
