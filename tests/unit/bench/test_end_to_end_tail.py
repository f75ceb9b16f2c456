"""The end-to-end bench's percentiles count the calls that never came out, not only the rest."""

from __future__ import annotations

from bench.end_to_end.path import Load, _median_or_none


def _load(sent: int, arrived_ms: list[float]) -> Load:
    load = Load(rate=float(sent), seconds=1.0)
    for i in range(sent):
        load.sent_at[f"c{i}"] = 0.0
    for i, ms in enumerate(arrived_ms):
        load.arrived_at[f"c{i}"] = ms / 1000
    return load


def test_a_tail_that_did_not_come_out_is_not_reported_as_the_tail_of_the_rest() -> None:
    load = _load(100, [float(i + 1) for i in range(90)])  # 10 of 100 never came out
    assert load.percentile_ms(50) == 50.0
    assert load.percentile_ms(99) is None  # not 89 ms: the slowest tenth is missing


def test_every_call_out_gives_the_plain_percentile() -> None:
    load = _load(100, [float(i + 1) for i in range(100)])
    assert load.percentile_ms(99) == 99.0


def test_the_median_of_runs_counts_a_run_beyond_the_drain_as_the_largest() -> None:
    assert _median_or_none([3.0, None, 1.0]) == 3.0
    assert _median_or_none([None, None, 1.0]) is None
