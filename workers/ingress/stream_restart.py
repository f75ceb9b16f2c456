"""A restarted ingress closes the streams its killed predecessor left open.

Each stream the journal still holds gets its ``closed`` record on both stream topics, reason
``ingress_restarted`` and code 1006 (the connection ended without a close frame), at start-up
and before the ingress serves: the stream archiver archives it then, not after its quiet
period. The killed process's counts are gone, so the record's counters are 0 (its ``lost``
does not count what the kill lost). ``frame_index`` is :data:`RESTART_FRAME_INDEX`, above any
frame the stream had, so the archiver does not take the record for a copy of an earlier one;
being deterministic, it also gives the same CloudEvent id if a second restart writes it again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from topics.events import format_time
from workers.ingress.sink import SpoolFull
from workers.ingress.stream import CLOSE_ABNORMAL, CLOSED_HEADROOM, stream_records
from workers.ingress.stream_continuity import Continuity
from workers.ingress.stream_frames import StreamTally, closed_data
from workers.ingress.stream_journal import OpenStream, StreamJournal
from workers.ingress.webhook import Ingress

__all__ = ["REASON", "RESTART_FRAME_INDEX", "close_left_streams", "restarted_closed"]

log = logging.getLogger(__name__)

REASON = "ingress_restarted"
RESTART_FRAME_INDEX = 2**31 - 1


async def close_left_streams(ing: Ingress, journal: StreamJournal) -> int:
    """Write a closed record for every stream left open; how many were closed.

    A stream whose record is not kept (the spool full, its disk failing) stays in the journal
    for the next start.
    """
    left = await asyncio.to_thread(journal.left_open)
    closed = 0
    for stream in left:
        try:
            await _close(ing, stream)
        except (SpoolFull, OSError) as exc:
            log.error("stream %s: closed record not kept (%s)", stream.connection_id, exc)
            continue
        await journal.remove(stream.connection_id)
        ing.metrics.streams_closed.labels(REASON).inc()
        closed += 1
    if left:
        log.warning("%d of %d streams left open by the previous run closed", closed, len(left))
    return closed


async def _close(ing: Ingress, stream: OpenStream) -> None:
    now = datetime.now(UTC)
    for topic, value in stream_records(ing, restarted_closed(stream, now), now, lifecycle=True):
        await ing.sink.deliver(topic, stream.stream_sid, value, headroom=CLOSED_HEADROOM)


def restarted_closed(stream: OpenStream, now: datetime) -> dict[str, Any]:
    """The ``data`` of the closed record a restart writes for ``stream``."""
    identity = {
        "stream_sid": stream.stream_sid,
        "customer_id": stream.customer_id,
        "app_id": stream.app_id,
        "connection_id": stream.connection_id,
    }
    return closed_data(
        identity,
        frame_index=RESTART_FRAME_INDEX,
        received_at=format_time(now),
        reason=REASON,
        close_code=CLOSE_ABNORMAL,
        started_at=stream.started_at,
        tally=StreamTally(),
        continuity=Continuity(),
    )
