"""The callback priority of a missed call: repeat callers and business hours first.

The rule (documented in the README and tested):

- ``high``: a repeat caller (``repeat_count_24h`` at or above the threshold, 2 by default)
  who called within business hours;
- ``medium``: a repeat caller outside business hours (or with no hours configured), or a
  first-time caller within business hours;
- ``low``: a first-time caller outside business hours or with no hours configured.

Unknown business hours (``None``) rank like "outside": we only promote what we know.
"""

from __future__ import annotations

__all__ = ["PRIORITIES", "priority"]

PRIORITIES = ("high", "medium", "low")


def priority(repeat_count_24h: int, within_business_hours: bool | None, threshold: int = 2) -> str:
    repeat = repeat_count_24h >= threshold
    in_hours = within_business_hours is True
    if repeat and in_hours:
        return "high"
    if repeat or in_hours:
        return "medium"
    return "low"
