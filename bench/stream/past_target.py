"""Bench path "stream_500": live audio past its target, at 500 streams (see ``path.py``)."""

from __future__ import annotations

from bench.results import PathResult
from bench.stream.path import measure_past_target

__all__ = ["measure"]


def measure(quick: bool) -> list[PathResult]:
    return measure_past_target(quick)
