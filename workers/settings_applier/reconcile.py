"""Periodic reconciliation: is each app at Exotel still as we last applied it?

Every ``EXOPIPE_APPLIER_RECONCILE_INTERVAL`` seconds (0 = off) the worker GETs every app in its
``apps`` table (the apps of its assigned partitions) and compares the seven settings with the last
applied ones. When they differ it publishes a ``kind: drift`` record to ``exotel.settings.state``
(key ``customer_id/app_id``): ``settings`` is what Exotel reports now, ``expected`` what we
applied, ``differences`` the fields. It goes to the state topic because that topic means "what we
know of the app's settings", and after a drift the truth is Exotel's. The same drift is published
once, not every round; it is published again if it changes, and forgotten when the app matches
again or a new command is applied.

Both sides are compared in their redacted form (``records.public_settings``), the only form the
``apps`` table keeps: a URL whose credential alone changed at Exotel (``?token=`` or a password)
is not seen as drift, and no credential is ever written.

A failed GET is logged and skipped (the next round tries again): reconciliation must never stop
the worker, never change settings at Exotel, and never retry in a tight loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from workers.errors import PipelineError
from workers.exotel_client import ExotelClient
from workers.settings_applier.delivery import Outbox
from workers.settings_applier.records import differences, drift_event, public_settings
from workers.settings_applier.state import DurableTable

__all__ = ["Reconciler", "RoundReport"]

log = logging.getLogger(__name__)


@dataclass
class RoundReport:
    checked: int = 0
    drifted: int = 0
    published: int = 0
    errors: int = 0


class Reconciler:
    def __init__(
        self,
        apps: DurableTable,
        client: ExotelClient,
        outbox: Outbox,
        slots: asyncio.Semaphore,
    ) -> None:
        self._apps = apps
        self._client = client
        self._outbox = outbox
        self._slots = slots

    async def run_once(self) -> RoundReport:
        report = RoundReport()
        entries = list(self._apps.items())
        await asyncio.gather(*(self._check(key, entry, report) for key, entry in entries))
        if entries:
            log.info(
                "reconcile: %d apps checked, %d drifted, %d drift records, %d errors",
                report.checked,
                report.drifted,
                report.published,
                report.errors,
            )
        return report

    async def _check(self, key: str, entry: dict, report: RoundReport) -> None:
        customer_id, _, app_id = key.partition("/")
        # Entries written before redaction hold real URLs: redacting again changes nothing else.
        expected = public_settings(entry.get("settings") or {})
        try:
            async with self._slots:
                current = await self._client.get_settings(customer_id, app_id)
        except PipelineError as exc:
            report.errors += 1
            log.warning("reconcile: GET %s failed: %s", key, exc)
            return
        report.checked += 1
        observed = public_settings(current.settings)
        fields = differences(expected, observed)
        seen = entry.get("drift")
        if not fields:
            if seen is not None:
                await self._apps.put(
                    int(entry["p"]), key, {**entry, "settings": expected, "drift": None}
                )
            return
        report.drifted += 1
        if seen is not None and public_settings(seen) == observed:
            return
        event = drift_event(
            customer_id,
            app_id,
            observed=observed,
            expected=expected,
            updated_at=current.updated_at,
            command_id=entry.get("command_id"),
        )
        await self._outbox.send(self._outbox.state, key, event.to_bytes(), None)
        await self._apps.put(
            int(entry["p"]), key, {**entry, "settings": expected, "drift": observed}
        )
        report.published += 1
        log.warning("reconcile: %s drifted from the last applied settings in %s", key, fields)
