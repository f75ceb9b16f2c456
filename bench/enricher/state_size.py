"""How big the enricher's state gets, and how long a restart takes to restore it.

    python -m bench.enricher.state_size [--minutes 10] [--restore]

Runs the enricher's own logic (``workers.enricher.stages``, no Kafka) over ``--minutes`` of the
bench's traffic at 500 missed calls/s in event time (each call with its popup, callers as
``bench/enricher/path.py`` makes them: 997 numbers over 4 apps), then reports each store's
entries and bytes, and what they come to for 24 h of the same traffic (event time moving at
the same 500 calls/s, not the 7 s per call of the throughput bench's events) (popups live 2 h, seen
event ids 48 h, caller histories 25 h). With ``--restore`` it writes that state to the
changelog topics of a fresh topic prefix on the local broker and times a real
``exopipe worker enricher`` restoring it into an empty state directory, then starting again on
the state it left on disk (the worker's own "restored in" log line).
Talks to the local broker only; bounded by ``--minutes``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.enricher.path import _event
from bench.processes import bench_env, running, settings_of, wait_for_log
from topics.catalog import CALL_PARTITIONS, WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL
from workers.config import EnricherSettings
from workers.enricher import stages
from workers.enricher.hours import parse_hours_book
from workers.enricher.stages import Enricher, Position, Topics
from workers.enricher.stores import EnricherStores
from workers.kafka import new_producer
from workers.plumbing.batch_worker import Outbox, partition_for

__all__ = ["main"]

RATE = 500  # missed calls per second
DAY_S = 24 * 3600
LIFETIME_S = {"popups": 2 * 3600, "handled": 48 * 3600, "pending": 3, "callers": 25 * 3600}


class _NoSettings:
    """Stage two asks the settings view one question; the bench has no apps."""

    def callback_url_configured(self, customer_id: str, app_id: str) -> bool | None:
        return None


@dataclass
class _Clock:
    ms: int

    def __call__(self) -> int:
        return self.ms


def simulate(minutes: float) -> Enricher:
    """The stores after ``minutes`` of traffic, every record handled as the worker would."""
    names = Topics("in", "missed", "by-caller", "enriched", "rejected")
    stores = EnricherStores.declare("bench", (names.incoming, names.missed), names.by_caller)
    for store in stores.all():
        for partition in range(CALL_PARTITIONS):
            store.store.adopt(partition, {})
    enricher = Enricher(
        EnricherSettings(),
        stores,
        names,
        parse_hours_book({}),
        _NoSettings(),  # type: ignore[arg-type]
    )
    clock = _Clock(1_772_427_600_000)
    stages.now_ms = clock  # event time and the worker's clock move together here
    widths = dict.fromkeys((names.by_caller, names.enriched, names.rejected), CALL_PARTITIONS)
    offsets = [0] * CALL_PARTITIONS
    for i in range(int(minutes * 60 * RATE)):
        clock.ms += 1000 // RATE
        sid = f"CA{i:010d}"
        p = partition_for(sid.encode(), CALL_PARTITIONS)
        out = Outbox(widths)
        at = datetime.fromtimestamp(clock.ms / 1000, UTC)  # event time at 500 calls/s
        popup, missed = (
            _event(spec, sid, i, at) for spec in (WEBHOOK_INCOMING_CALL, WEBHOOK_MISSED_CALL)
        )
        enricher.on_popup(popup, Position("in", p, offsets[p]), out)
        enricher.on_missed(missed, Position("m", p, offsets[p]), out)
        offsets[p] += 1
        for (topic, partition), records in out.records.items():
            if topic == names.by_caller:
                for _, value in records:
                    stage_out = Outbox(widths)
                    where = Position(topic, partition, i)
                    enricher.on_stage(value, where, stage_out)
        if i % 5000 == 0:
            enricher.tick(clock.ms, Outbox(widths))
    return enricher


def report(enricher: Enricher, minutes: float) -> None:
    """Each store now, and at 24 h of the same traffic (entries that live longer than a day
    count a day's worth; a caller's history holds every call of its last 25 h)."""
    seconds = minutes * 60
    print(f"{seconds * RATE:,.0f} missed calls ({minutes:g} min at {RATE}/s):")
    for store in enricher.stores.all():
        items = [(k, v) for p in store.store.owned for k, v in store.store.items(p)]
        size = sum(len(k) + len(v) for k, v in items)
        if store.name == "callers":
            calls = sum(len(v["entries"]) for _, v in store.items_all())
            day_entries, per_unit = len(items), size / max(calls, 1)
            day_bytes = per_unit * RATE * min(LIFETIME_S["callers"], DAY_S)
        else:
            day_entries = RATE * min(LIFETIME_S[store.name], DAY_S)
            day_bytes = size / max(len(items), 1) * day_entries
        print(
            f"  {store.name:8s} now {len(items):>9,} entries {size / 2**20:7.1f} MiB;"
            f" at 24 h {day_entries:>12,.0f} entries {day_bytes / 2**30:7.2f} GiB"
        )
    callers = enricher.stores.callers
    longest = max((len(v["entries"]) for _, v in callers.items_all()), default=0)
    per_day = longest * min(LIFETIME_S["callers"], DAY_S) / seconds
    print(
        f"  longest caller history now: {longest} calls; at 24 h about {per_day:,.0f}, a value "
        f"of about {per_day * 130 / 2**20:.1f} MiB written to the changelog at each of its calls"
    )


async def restore(enricher: Enricher) -> None:
    env = bench_env(EXOPIPE_LOG_LEVEL="INFO")
    settings = settings_of(env)
    group = f"{settings.topic_prefix}exopipe-enricher"
    producer = new_producer(settings, linger_ms=20, max_batch_size=1024 * 1024)
    log = Path(tempfile.mkdtemp(prefix="bench-state-")) / "enricher.log"
    with running(["worker", "enricher"], env, log) as worker:  # creates the topics, empty
        wait_for_log(worker, log, "Worker ready")
    await producer.start()
    try:
        written = 0
        for store in enricher.stores.all():
            topic = f"{group}-{store.name}-changelog"
            for partition in store.store.owned:
                for key, value in store.store.items(partition):
                    await producer.send(topic, value, key=key.encode(), partition=partition)
                    written += 1
        await producer.flush()
    finally:
        await producer.stop()
    print(f"wrote {written:,} changelog records; starting a worker on them")
    # First start: nothing on disk, every entry read. Second start, after a clean stop: each
    # store partition continues from its checkpoint (RELIABILITY.md section 4).
    for start in ("restore into an empty state directory", "restart with the state on disk"):
        began = time.monotonic()
        with running(["worker", "enricher"], env, log) as worker:
            wait_for_log(worker, log, "Worker ready", limit_s=600)
            took = time.monotonic() - began
        found = re.findall(r"\((\d+) store entries restored in ([\d.]+) s\)", log.read_text())
        entries, seconds = found[-1]
        print(
            f"{start}: {int(entries):,} entries read in {float(seconds):.1f} s "
            f"({int(entries) / max(float(seconds), 1e-9):,.0f}/s); "
            f"process start to ready {took:.1f} s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="event time to simulate")
    parser.add_argument("--restore", action="store_true", help="time a worker restoring it")
    args = parser.parse_args(argv)
    began = time.monotonic()
    enricher = simulate(args.minutes)
    print(f"simulated in {time.monotonic() - began:.0f} s")
    report(enricher, args.minutes)
    if args.restore:
        asyncio.run(restore(enricher))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
