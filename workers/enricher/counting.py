"""The rolling repeat count per (app, caller), by event time, with redelivery told from duplicates.

A caller's history is a list of entries, one per distinct missed-call event id. The count of a
call at event time ``t`` is the number of entries with ``t - window < t_i <= t``: a call exactly
24 h after another no longer counts it (half-open window). ``first_missed_at`` is the earliest
of those. Entries older than the newest minus ``window + slack`` are dropped; the slack keeps
enough history for a call that arrives late in event-time order.

An event id already in the history is either the same record read again after a crash (same
position in the input topic: answer with the stored result so the re-emitted record is
identical) or a second copy of the event (another position: a duplicate, emit nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CountResult", "record_call"]


@dataclass(frozen=True)
class CountResult:
    """``status`` is ``new``, ``redelivery`` or ``duplicate``; ``entries`` is the new history."""

    status: str
    count: int
    first_ms: int
    enriched_at: str
    entries: list[dict[str, Any]]


def record_call(
    entries: list[dict[str, Any]],
    *,
    event_id: str,
    t_ms: int,
    position: str,
    enriched_at: str,
    window_ms: int,
    slack_ms: int,
) -> CountResult:
    """Add one call to a caller's history (pure: returns a new list, mutates nothing)."""
    for entry in entries:
        if entry["id"] == event_id:
            status = "redelivery" if entry["pos"] == position else "duplicate"
            return CountResult(status, entry["n"], entry["first"], entry["at"], entries)
    in_window = [e["t"] for e in entries if t_ms - window_ms < e["t"] <= t_ms]
    count = len(in_window) + 1
    first = min([*in_window, t_ms])
    newest = max([t_ms, *(e["t"] for e in entries)])
    horizon = newest - window_ms - slack_ms
    kept = [e for e in entries if e["t"] > horizon]
    entry = {"id": event_id, "t": t_ms, "pos": position, "n": count, "first": first}
    entry["at"] = enriched_at
    return CountResult("new", count, first, enriched_at, [*kept, entry])
