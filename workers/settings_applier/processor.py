"""One command, start to finish: exactly one final result per ``command_id``.

The steps, for a command with de-duplication key K (its ``command_id``; for an unreadable record,
its partition and offset) read from partition P:

1. Look K up in the ledger (a changelog-backed table). Found and ``produced``: a duplicate; done,
   no PUT and no result. Found but not ``produced``: go to step 5 with *verify*.
2. Validate; apply (PUT, retried per the policy) unless invalid.
3. Build the result event (id = uuid5 of K), choose its partition R and a floor F (an offset of R
   that the result will land at or after). An applied command first updates the ``apps`` table
   (what the reconciler compares against). Then write ``{result, R, F, produced: false}`` to the
   ledger and **wait for Kafka to acknowledge that changelog record**.
4. Produce the state record (applied only) and then the result, each acknowledged (acks=all).
5. *Verify* (only on a redelivery): scan R from F for the result's id; if it is there, skip 4.
   Then mark K ``produced`` (the entry shrinks to a marker) and return, which lets the
   dispatcher ack the command in offset order.

Why a kill -9 at any moment gives exactly one result: the offset is committed only after step 5,
so a crash anywhere redelivers the command (and everything after it on P, in order).

* Crash before the ledger write of step 3 is acknowledged: no result exists (results are produced
  only after that write) and K is unknown, so the command runs again from step 2. The PUT may be
  sent twice, which is safe: it is the same partial update, and no later command of the same app
  has started (they wait for this one), so the re-run cannot undo a newer change.
* Crash after the ledger write, before or during step 4: K is found unproduced, the scan of step 5
  tells whether the result reached Kafka, and it is produced only if it did not. No second PUT.
* Crash after step 4 but before ``produced`` is recorded: the scan finds the result; nothing is
  produced again.
* Crash after ``produced``: step 1 drops the duplicate.

A re-sent command (a producer's retry, a user re-sending the same ``command_id``) takes the same
path: it is chained behind the original (same app, same key), so it always sees its final entry.
The one residual window is Kafka's own: a result whose produce request reached the broker but was
not yet replicated when the restarted worker scans (milliseconds, against a restart of seconds).
The state topic may see an ``applied`` record twice after a crash; it is compacted and keyed by
app, so the copy is harmless.

This module must never ack (the dispatcher does) and never swallow a Kafka failure: those raise,
the command stays unacked and the worker stops, to be redelivered on restart.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workers import json_codec
from workers.retry import RetryPolicy, retry_async
from workers.settings_applier.applier import Applier
from workers.settings_applier.commands import Command, Rejected, parse_command
from workers.settings_applier.delivery import Outbox
from workers.settings_applier.records import (
    Outcome,
    public_settings,
    result_event,
    result_id,
    state_event,
)
from workers.settings_applier.state import DurableTable

__all__ = ["CommandProcessor", "Parsed"]

log = logging.getLogger(__name__)
# Jitter for Kafka retries; retry_async would seed a new generator from os.urandom per call.
_JITTER = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class Parsed:
    """A record read from the command topic, parsed, with the keys it is chained and stored on."""

    command: Command | Rejected
    partition: int
    offset: int
    dedup_key: str
    result_key: str

    @property
    def chains(self) -> tuple[str, ...]:
        return (f"app:{self.result_key}", f"cmd:{self.dedup_key}")


class CommandProcessor:
    """Everything between "a record arrived" and "it may be acked"."""

    def __init__(
        self,
        *,
        ledger: DurableTable,
        apps: DurableTable,
        applier: Applier,
        outbox: Outbox,
        kafka_policy: RetryPolicy,
        raw_cap: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ledger = ledger
        self._apps = apps
        self._applier = applier
        self._outbox = outbox
        self._kafka_policy = kafka_policy
        self._raw_cap = raw_cap
        self._clock = clock

    def parse(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> Parsed:
        command = parse_command(value, raw_cap=self._raw_cap)
        dedup_key = command.command_id or f"@{partition}:{offset}"
        if command.customer_id and command.app_id:
            result_key = f"{command.customer_id}/{command.app_id}"
        else:
            result_key = (key or b"").decode("utf-8", errors="replace")
        return Parsed(command, partition, offset, dedup_key, result_key)

    async def handle(self, item: Parsed) -> str:
        """Run ``item`` to its final result; returns what happened (for logs and tests)."""
        entry = self._ledger.get(item.dedup_key)
        if entry is not None:
            if entry.get("produced"):
                log.info("duplicate command %s: already has its result", item.dedup_key)
                return "duplicate"
            await self._deliver(item, entry, verify=True)
            return "redelivered"
        command = item.command
        if isinstance(command, Rejected):
            outcome = Outcome("invalid", errors=command.errors)
        else:
            outcome = await self._applier.apply(command)
        now = self._clock()
        result = result_event(
            command,
            outcome,
            dedup_key=item.dedup_key,
            partition=item.partition,
            offset=item.offset,
            now=now,
        )
        partition = self._outbox.result_partition(item.result_key)
        entry = {
            "result": result.to_dict(),
            "rp": partition,
            "floor": await self._kafka(lambda: self._outbox.floor(partition), "offsets"),
            "produced": False,
            "p": item.partition,
            "at": time.time(),
        }
        if outcome.outcome == "applied" and isinstance(command, Command):
            entry["state"] = state_event(command, outcome, now=now).to_dict()
        if "state" in entry and isinstance(command, Command):
            applied = {
                # Redacted like the records: the changelog is a Kafka topic too.
                "settings": public_settings(outcome.settings or {}),
                "updated_at": outcome.updated_at,
                "command_id": command.command_id,
                "p": item.partition,
                "at": time.time(),
            }
            await self._kafka(
                lambda: self._apps.put(item.partition, item.result_key, applied), "apps"
            )
        await self._kafka(lambda: self._ledger.put(item.partition, item.dedup_key, entry), "ledger")
        await self._deliver(item, entry, verify=False)
        log.info(
            "command %s for %s: %s (attempts %d, status %s)",
            item.dedup_key,
            item.result_key,
            outcome.outcome,
            outcome.attempts,
            outcome.http_status,
        )
        return outcome.outcome

    async def _deliver(self, item: Parsed, entry: dict[str, Any], *, verify: bool) -> None:
        result_bytes = json_codec.dumps(entry["result"])
        on_kafka = verify and await self._kafka(
            lambda: self._outbox.contains(entry["rp"], entry["floor"], result_id(item.dedup_key)),
            "scan",
        )
        if on_kafka:
            log.info("result of %s is already on Kafka; not producing it again", item.dedup_key)
        else:
            if verify:
                log.info("re-sending the recorded result of %s", item.dedup_key)
            if entry.get("state"):
                state_bytes = json_codec.dumps(entry["state"])
                await self._kafka(
                    lambda: self._outbox.send(
                        self._outbox.state, item.result_key, state_bytes, None
                    ),
                    "state",
                )
            await self._kafka(
                lambda: self._outbox.send(
                    self._outbox.result, item.result_key, result_bytes, entry["rp"]
                ),
                "result",
            )
        marker = {"produced": True, "p": item.partition, "at": entry.get("at", time.time())}
        await self._kafka(
            lambda: self._ledger.put(item.partition, item.dedup_key, marker), "ledger"
        )

    async def _kafka(self, operation: Callable[[], Any], what: str) -> Any:
        async def once(attempt: int) -> Any:
            return await operation()

        return await retry_async(once, self._kafka_policy, what=f"Kafka {what}", rng=_JITTER)
