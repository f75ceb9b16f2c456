"""Per-customer business hours from configuration, and whether a moment falls inside them.

Configuration (``EXOPIPE_ENRICHER_BUSINESS_HOURS``) maps a customer id, or ``"*"`` for every
customer without its own entry, to a timezone and opening hours per weekday::

    {"*": {"timezone": "Asia/Kolkata", "hours": {"mon-fri": "09:30-18:00", "sat": "10:00-14:00"}}}

A day may list several spans (``["09:00-13:00", "14:00-18:00"]``); a span that ends before it
starts runs past midnight into the next day. A customer with no hours gets ``None``: we do not
know, and the record says so rather than guessing. Bad configuration fails at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workers.errors import ConfigError

__all__ = ["BusinessHours", "HoursBook", "parse_hours_book"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class BusinessHours:
    """Opening spans in minutes since local midnight, per weekday (0 = Monday)."""

    timezone: ZoneInfo
    spans: tuple[tuple[tuple[int, int], ...], ...]

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.timezone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.spans[local.weekday()])


@dataclass(frozen=True)
class HoursBook:
    """Every customer's hours; ``within`` answers True, False or None (not configured)."""

    by_customer: Mapping[str, BusinessHours]

    def within(self, customer_id: str, moment: datetime) -> bool | None:
        hours = self.by_customer.get(customer_id) or self.by_customer.get("*")
        return None if hours is None else hours.contains(moment)


def _minutes(text: str) -> int:
    hour, _, minute = text.strip().partition(":")
    value = int(hour) * 60 + int(minute or 0)
    if not 0 <= value <= _DAY_MINUTES or not 0 <= int(minute or 0) < 60:
        raise ValueError(text)
    return value


def _days(spec: str) -> list[int]:
    first, _, last = spec.strip().lower().partition("-")
    start = _DAYS.index(first)
    end = _DAYS.index(last) if last else start
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def _parse_one(customer: str, entry: Any) -> BusinessHours:
    if not isinstance(entry, dict) or not isinstance(entry.get("hours"), dict):
        raise ValueError("needs {'timezone': ..., 'hours': {...}}")
    timezone = ZoneInfo(str(entry.get("timezone", "Asia/Kolkata")))
    spans: list[list[tuple[int, int]]] = [[] for _ in _DAYS]
    for day_spec, value in entry["hours"].items():
        ranges = [value] if isinstance(value, str) else list(value)
        for day in _days(day_spec):
            for text in ranges:
                begin, _, finish = str(text).partition("-")
                start, end = _minutes(begin), _minutes(finish)
                if end > start:
                    spans[day].append((start, end))
                elif end < start:  # past midnight: the rest of today and the start of tomorrow
                    spans[day].append((start, _DAY_MINUTES))
                    spans[(day + 1) % 7].append((0, end))
    return BusinessHours(timezone, tuple(tuple(sorted(day)) for day in spans))


def parse_hours_book(config: Mapping[str, Any]) -> HoursBook:
    """Parse the configuration; any mistake is a ``ConfigError`` naming the customer."""
    book: dict[str, BusinessHours] = {}
    for customer, entry in config.items():
        try:
            book[str(customer)] = _parse_one(str(customer), entry)
        except (ValueError, TypeError, ZoneInfoNotFoundError) as exc:
            raise ConfigError(
                f"EXOPIPE_ENRICHER_BUSINESS_HOURS: customer {customer!r}: {exc}"
            ) from None
    return HoursBook(book)
