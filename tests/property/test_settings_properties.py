"""Properties of settings-command validation: any record value (bytes, JSON, envelope) becomes a
Command or a Rejected, never an exception; a valid command round-trips through its envelope."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from topics.catalog import SETTINGS_COMMAND
from topics.events import make_event
from workers import json_codec
from workers.settings_applier.commands import (
    BOOL_FIELDS,
    URL_FIELDS,
    Command,
    Rejected,
    parse_command,
    url_problem,
)

from .strategies import json_values, safe_text

RAW_CAP = 64
ident = st.text(alphabet=st.characters(whitelist_categories=("L", "N"), max_codepoint=0x2FF),
                min_size=1, max_size=20)  # fmt: skip
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True)
good_urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https", "HTTPS"]),
    hosts,
    st.from_regex(r"[a-z0-9/_-]{0,20}", fullmatch=True),
)
good_settings = st.fixed_dictionaries(
    {},
    optional={
        **{name: good_urls for name in sorted(URL_FIELDS)},
        **{name: st.booleans() for name in sorted(BOOL_FIELDS)},
    },
).filter(bool)
good_data = st.fixed_dictionaries(
    {"command_id": ident, "customer_id": ident, "app_id": ident, "settings": good_settings},
    optional={"requested_by": ident, "dry_run": st.booleans()},
)


def _is_outcome(result: Any) -> None:
    assert isinstance(result, Command | Rejected)
    if isinstance(result, Rejected):
        assert result.errors and all(isinstance(e, str) for e in result.errors)
        if result.raw is not None:
            assert result.raw.size >= 0 and len(result.raw.text) <= 4 * RAW_CAP


@given(value=st.none() | st.binary(max_size=300))
def test_any_bytes_give_an_outcome(value: bytes | None) -> None:
    _is_outcome(parse_command(value, raw_cap=RAW_CAP))


@given(value=json_values)
def test_any_json_gives_an_outcome(value: Any) -> None:
    _is_outcome(parse_command(json_codec.dumps(value), raw_cap=RAW_CAP))


@given(
    data=json_values | good_data,
    extra=st.dictionaries(safe_text, json_values, max_size=3),
    type_=st.sampled_from([SETTINGS_COMMAND.event_type, "x.y"]) | safe_text,
)
def test_any_envelope_gives_an_outcome(data: Any, extra: dict, type_: str) -> None:
    envelope = {**extra, "specversion": "1.0", "id": "e1", "source": "/t", "type": type_}
    envelope["data"] = data
    _is_outcome(parse_command(json_codec.dumps(envelope), raw_cap=RAW_CAP))


@given(data=good_data)
def test_valid_command_round_trips(data: dict) -> None:
    event = make_event(SETTINGS_COMMAND, data, source="/p")
    result = parse_command(event.to_bytes(), raw_cap=RAW_CAP)
    assert isinstance(result, Command), result
    assert result.command_id == data["command_id"]
    assert result.app_key == f"{data['customer_id']}/{data['app_id']}"
    assert result.settings == data["settings"]
    assert result.dry_run == data.get("dry_run", False)
    assert result.event_id == event.id


@given(data=good_data, name=st.sampled_from(sorted(URL_FIELDS)), bad=st.sampled_from([
    "ftp://h.example/x", "/relative", "https://u:%5Bredacted%5D@h.example/", "https://", "https://h:99999/",
    "https://h.example/a b", "javascript:alert(1)", "https://h.example/\x00",
]))  # fmt: skip
def test_a_bad_url_is_named_in_the_rejection(data: dict, name: str, bad: str) -> None:
    data = {**data, "settings": {**data["settings"], name: bad}}
    envelope = {"specversion": "1.0", "id": "e", "source": "/t",
                "type": SETTINGS_COMMAND.event_type, "data": data}  # fmt: skip
    result = parse_command(json_codec.dumps(envelope), raw_cap=RAW_CAP)
    assert isinstance(result, Rejected)
    assert any(name in error for error in result.errors), result.errors
    assert result.command_id == data["command_id"]


@given(name=st.sampled_from(sorted(URL_FIELDS)), value=safe_text | good_urls)
def test_url_problem_never_raises(name: str, value: str) -> None:
    problem = url_problem(name, value)
    assert problem is None or problem.startswith(f"settings/{name}")
