"""The stream bench's account of what missed the target's terms at a size (``breaks``)."""

from __future__ import annotations

from typing import Any

from bench.stream.path import breaks


def _run(**figures: Any) -> dict[str, Any]:
    run = {"sent": 6000, "delivered": 6000, "refused": 0, "cut": 0, "send_lag_p99_ms": 1.0}
    return {**run, **figures}


def test_nothing_breaks_when_every_term_holds() -> None:
    assert breaks(200, [_run(), _run()], p99=12.0) == []


def test_each_miss_is_named_most_severe_first() -> None:
    runs = [
        _run(refused=3, cut=1, delivered=5900, send_lag_p99_ms=70.0),
        _run(send_lag_p99_ms=90.0),
    ]
    assert breaks(500, runs, p99=140.0) == [
        "connections refused: 3 of 1000",
        "streams cut before their stop: 1 of 1000",
        "frames lost: 100 of 12000",
        "p99 140.0 ms, past 50 ms",
        "frames late from the senders: p99 80.0 ms behind their slots",
    ]


def test_nothing_delivered_is_past_the_target() -> None:
    assert breaks(500, [_run(delivered=0)], p99=float("nan")) == [
        "frames lost: 6000 of 6000",
        "p99 nan ms, past 50 ms",
    ]
