"""One bench path's measured figures, side by side with its baseline from the same run.

Every path module under ``bench/`` returns :class:`PathResult` values; ``python -m bench``
prints them as one table or, with ``--json``, one JSON object per line. Medians are taken by
the path module over alternating runs of the subject and its baseline.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["REQUIRED_FIELDS", "PathResult", "median", "percentile"]

# The fields every ``--json`` object carries (a unit test holds the bench to them).
REQUIRED_FIELDS = (
    "path",
    "rate",
    "baseline_rate",
    "ratio",
    "p50_ms",
    "p99_ms",
    "delivered",
    "sent",
)


@dataclass
class PathResult:
    """What one path did, and what its baseline did in the same run.

    ``rate`` and ``baseline_rate`` are in ``unit`` (events/s, MB/s, commands/s ...);
    ``ratio`` is ``rate / baseline_rate``. ``target`` says in words what the path must reach
    and ``met`` whether it did; ``extra`` holds path-specific figures (peak RSS, offered rate);
    ``skipped`` says why a path did not run (a tool missing here). ``reported`` is set on a row
    run past the target to see what breaks first: what did, in words, or that nothing did; such
    a row is shown like the others and never fails the run.
    """

    path: str
    unit: str
    rate: float
    baseline: str
    baseline_rate: float
    p50_ms: float | None
    p99_ms: float | None
    delivered: int
    sent: int
    target: str
    met: bool
    baseline_p50_ms: float | None = None
    baseline_p99_ms: float | None = None
    runs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the path did not run (a tool missing), else None
    reported: str | None = None  # past the target, for what breaks first: what did

    @classmethod
    def not_run(cls, path: str, reason: str) -> PathResult:
        """A row for a path that could not run here: the table and the JSON say so and why."""
        return cls(
            path=path, unit="", rate=0.0, baseline="-", baseline_rate=0.0, p50_ms=None,
            p99_ms=None, delivered=0, sent=0, target="-", met=False, runs=0, skipped=reason,
        )  # fmt: skip

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate if self.baseline_rate else 0.0

    def to_json(self) -> dict[str, Any]:
        out = {k: _rounded(v) for k, v in asdict(self).items()}
        out["ratio"] = round(self.ratio, 3)
        return out


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))  # 1-based
    return ordered[max(1, min(len(ordered), rank)) - 1]
