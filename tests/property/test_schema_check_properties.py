"""The quick schema check (jsonschema-rs) never says "valid" where jsonschema does not, and
validate_data decides exactly as jsonschema does, on every topic's schema, for its examples
changed in every way a record could be wrong: a field set to any JSON value or to a value at an
edge (lengths at the bounds, dates, patterns), a field removed, a field added."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topics.catalog import CATALOG
from topics.schemas import (
    SchemaViolation,
    load_schema,
    quick_check_for,
    validate_data,
    validator_for,
)

from .strategies import json_values, safe_text

SCHEMAS = sorted(f for f in os.listdir("topics/schemas") if f.endswith(".schema.json"))

_edges = st.sampled_from(
    [
        "",
        "a",
        "a" * 63,
        "a" * 64,
        "a" * 65,
        "a" * 256,
        "a" * 257,
        "a" * 512,
        "a" * 513,
        "a" * 2048,
        "a" * 2049,
        "has/slash",
        "has space",
        "s3://bucket/key",
        "0" * 64,
        "A" * 64,
        "2024-06-15T10:30:00.000Z",
        "2024-06-15T10:30:00+05:30",
        "2024-06-15 10:30:00",
        "2024-13-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "json",
        "incoming_call",
        "missed_call",
        "call_status",
        -1,
        0,
        1,
        1.0,
        1.5,
        -0.5,
        True,
        False,
        None,
        [],
        {},
        ["a"],
        [1],
        {"a": 1},
    ]
)
values = (_edges | json_values).map(copy.deepcopy)  # edges are shared objects: never mutate them


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for name, item in value.items():
            found += _paths(item, (*prefix, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(data: st.DataObject, value: Any) -> Any:
    value = copy.deepcopy(value)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(value)))
        if not path:
            return data.draw(values)
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set" or (action == "delete" and isinstance(parent, list)):
            parent[path[-1]] = data.draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(safe_text)] = data.draw(values)
        else:
            parent.append(data.draw(values))
    return value


@given(data=st.data(), name=st.sampled_from(SCHEMAS))
def test_quick_check_agrees_with_jsonschema(data: st.DataObject, name: str) -> None:
    examples = load_schema(name).get("examples") or [{}]
    value = _mutate(data, data.draw(st.sampled_from(examples)))
    _agrees(name, value)


@given(value=values, name=st.sampled_from(SCHEMAS))
def test_quick_check_agrees_on_any_value(value: Any, name: str) -> None:
    _agrees(name, value)


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_example_takes_the_quick_path(name: str) -> None:
    for example in load_schema(name).get("examples") or []:
        assert quick_check_for(name)(example), example


def _agrees(name: str, value: Any) -> None:
    valid = validator_for(name).is_valid(value)
    if quick_check_for(name)(value):
        assert valid, value
    spec = next(spec for spec in CATALOG if spec.schema == name)
    try:
        validate_data(spec, value)
    except SchemaViolation:
        assert not valid, value
    else:
        assert valid, value
