"""Apply one valid command through the App Settings API, with the shared retry policy.

5xx, 429 and network errors are retried (capped exponential backoff with jitter, ``Retry-After``
honoured: :mod:`workers.retry`); every other error ends the command at once with its outcome.
A concurrency slot is held only while a request is on the wire, never during a backoff, so an
app that keeps failing does not starve the others of slots.

This module never produces records and never acks: it only turns a command into an
:class:`~workers.settings_applier.records.Outcome`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from workers.exotel_client import (
    AppSettings,
    ExotelBadRequest,
    ExotelClient,
    ExotelClientError,
    ExotelError,
    ExotelNotFound,
    ExotelUnauthorized,
    ExotelUnavailable,
    MissingToken,
)
from workers.retry import RetriesExhausted, RetryPolicy, retry_async
from workers.settings_applier.commands import Command
from workers.settings_applier.records import Outcome

__all__ = ["Applier", "outcome_for_error"]

log = logging.getLogger(__name__)


def outcome_for_error(exc: ExotelError, attempts: int) -> Outcome:
    """The result of a permanent API error (or of a missing token: no call was made)."""
    if isinstance(exc, MissingToken):
        return Outcome("unauthorized", attempts=0, errors=[str(exc)])
    if isinstance(exc, ExotelUnauthorized):
        kind = "unauthorized"
    elif isinstance(exc, ExotelNotFound):
        kind = "not_found"
    elif isinstance(exc, ExotelBadRequest | ExotelClientError):
        kind = "rejected"
    else:  # UnexpectedResponse: the API answered 2xx in a shape the spec does not have
        kind = "failed"
    return Outcome(
        kind, attempts=attempts, http_status=exc.status, errors=[str(exc)], api_error=exc.body
    )


class Applier:
    """Runs PUTs (or a dry-run GET) under ``slots`` with retries."""

    def __init__(
        self,
        client: ExotelClient,
        policy: RetryPolicy,
        slots: asyncio.Semaphore,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._policy = policy
        self._slots = slots
        # One generator for the jitter: retry_async would seed a new one from os.urandom per call.
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._sleep = sleep

    async def apply(self, command: Command) -> Outcome:
        attempts = 0

        async def once(attempt: int) -> AppSettings:
            nonlocal attempts
            attempts = attempt
            async with self._slots:
                if command.dry_run:
                    return await self._client.get_settings(command.customer_id, command.app_id)
                return await self._client.put_settings(
                    command.customer_id, command.app_id, command.settings
                )

        what = f"{'GET' if command.dry_run else 'PUT'} {command.app_key} ({command.command_id})"
        try:
            answer = await retry_async(
                once, self._policy, what=what, rng=self._rng, sleep=self._sleep
            )
        except RetriesExhausted as exc:
            last: Any = exc.last
            status = last.status if isinstance(last, ExotelUnavailable) else None
            body = last.body if isinstance(last, ExotelUnavailable) else None
            return Outcome(
                "failed",
                attempts=exc.attempts,
                http_status=status,
                errors=[f"gave up after {exc.attempts} attempts: {last}"],
                api_error=body,
            )
        except ExotelError as exc:
            return outcome_for_error(exc, attempts)
        if command.dry_run:
            preview = {**answer.settings, **command.settings}
            return Outcome(
                "dry_run",
                attempts=attempts,
                http_status=200,
                settings=preview,
                updated_at=answer.updated_at,
            )
        return Outcome(
            "applied",
            attempts=attempts,
            http_status=200,
            settings=answer.settings,
            updated_at=answer.updated_at,
        )
