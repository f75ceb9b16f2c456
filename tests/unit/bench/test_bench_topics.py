"""A bench run removes its own topics and those of long-dead runs, never a concurrent run's."""

from __future__ import annotations

import time

from bench import processes


def test_a_run_prefix_names_its_minute_and_is_remembered() -> None:
    prefix = processes.bench_env()["EXOPIPE_TOPIC_PREFIX"]
    assert prefix.startswith(processes.TOPIC_PREFIX) and prefix in processes._MADE
    assert not processes._stale(f"{prefix}exotel.settings.result")  # begun just now


def test_only_topics_of_runs_older_than_three_hours_are_stale() -> None:
    minute = int(time.time() // 60)
    old = f"{processes.TOPIC_PREFIX}{minute - 181}-0a1b2c3d.exotel.settings.result"
    recent = f"{processes.TOPIC_PREFIX}{minute - 30}-0a1b2c3d.exotel.settings.result"
    assert processes._stale(old)
    assert not processes._stale(recent)
    assert not processes._stale("exotel.settings.result")
    assert not processes._stale("test-0a1b2c3d.exotel.settings.result")
