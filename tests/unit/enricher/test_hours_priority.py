"""Business hours per customer and timezone, and the documented priority rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers.enricher.hours import parse_hours_book
from workers.enricher.priority import priority
from workers.errors import ConfigError

BOOK = parse_hours_book(
    {
        "acme": {"timezone": "Asia/Kolkata", "hours": {"mon-fri": "09:30-18:00"}},
        "night": {"timezone": "UTC", "hours": {"fri": "22:00-06:00"}},
        "split": {"timezone": "UTC", "hours": {"sat": ["09:00-12:00", "13:00-17:00"]}},
    }
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-03-02T04:00:00", True),  # Monday 09:30 IST: opens
        ("2026-03-02T03:59:00", False),  # Monday 09:29 IST
        ("2026-03-02T12:29:00", True),  # Monday 17:59 IST
        ("2026-03-02T12:30:00", False),  # Monday 18:00 IST: closed (end excluded)
        ("2026-03-07T06:00:00", False),  # Saturday
        ("2026-03-01T20:00:00", False),  # Sunday 01:30 IST
    ],
)
def test_customer_hours_in_its_timezone(moment: str, expected: bool) -> None:
    assert BOOK.within("acme", utc(moment)) is expected


def test_span_past_midnight_runs_into_the_next_day() -> None:
    assert BOOK.within("night", utc("2026-03-06T23:00:00")) is True  # Friday 23:00
    assert BOOK.within("night", utc("2026-03-07T05:59:00")) is True  # Saturday 05:59
    assert BOOK.within("night", utc("2026-03-07T06:00:00")) is False
    assert BOOK.within("night", utc("2026-03-05T23:00:00")) is False  # Thursday


def test_several_spans_a_day() -> None:
    assert BOOK.within("split", utc("2026-03-07T12:30:00")) is False
    assert BOOK.within("split", utc("2026-03-07T13:30:00")) is True


def test_no_hours_configured_is_none_and_star_is_the_default() -> None:
    assert BOOK.within("nobody", utc("2026-03-02T06:00:00")) is None
    book = parse_hours_book({"*": {"timezone": "UTC", "hours": {"mon-sun": "00:00-24:00"}}})
    assert book.within("anyone", utc("2026-03-02T06:00:00")) is True


@pytest.mark.parametrize(
    "entry",
    [
        {"timezone": "Mars/Olympus", "hours": {"mon": "09:00-10:00"}},
        {"timezone": "UTC", "hours": {"someday": "09:00-10:00"}},
        {"timezone": "UTC", "hours": {"mon": "9am-5pm"}},
        {"timezone": "UTC", "hours": {"mon": "09:75-10:00"}},
        {"timezone": "UTC"},
        "09:00-17:00",
    ],
)
def test_bad_configuration_fails_at_start(entry: object) -> None:
    with pytest.raises(ConfigError, match="'c1'"):
        parse_hours_book({"c1": entry})


@pytest.mark.parametrize(
    ("count", "within", "expected"),
    [
        (2, True, "high"),
        (5, True, "high"),
        (2, False, "medium"),
        (2, None, "medium"),
        (1, True, "medium"),
        (1, False, "low"),
        (1, None, "low"),
    ],
)
def test_priority_rule(count: int, within: bool | None, expected: str) -> None:
    assert priority(count, within) == expected


def test_priority_threshold_is_configurable() -> None:
    assert priority(2, True, threshold=3) == "medium"
    assert priority(3, True, threshold=3) == "high"
