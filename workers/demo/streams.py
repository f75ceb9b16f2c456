"""The demo's streamed calls: started on the double, which streams them to the ingress, and
followed there to their end.

The double does the streaming (not this process) because, as with Exotel, the URL is the one in
the app's settings, reachable from where the double runs: in ``--attach`` mode (compose) this
process may not see the ingress under that address at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.demo.plan import DemoPlan
from workers.exotel_double.control import AsyncDoubleControl, ControlError

__all__ = ["StreamsFailed", "StreamsSent", "check_double_streams", "start_streams", "streams_sent"]


class StreamsFailed(RuntimeError):
    """The double could not start a streamed call; the message says why."""


@dataclass(frozen=True)
class StreamsSent:
    whole: int
    problems: tuple[str, ...]


async def check_double_streams(ctl: AsyncDoubleControl, plan: DemoPlan) -> None:
    """Fail early, before anything is sent, if the plan streams and the double cannot."""
    if not plan.streams:
        return
    try:
        await ctl.streams()
    except ControlError as exc:
        raise StreamsFailed(
            f"the double has no streaming client ({exc}): it predates it; restart it,"
            " or run the demo with --streams 0"
        ) from None


async def start_streams(ctl: AsyncDoubleControl, plan: DemoPlan) -> dict[str, int]:
    """Start every streamed call at real-time pace; returns the ms of audio each one carries."""
    durations = {}
    for stream in plan.streams:
        try:
            started = await ctl.start_stream(
                plan.customer_id,
                stream.app_id,
                stream_sid=stream.stream_sid,
                call_sid=stream.call_sid,
                duration_s=stream.duration_s,
                speed=1.0,
            )
        except ControlError as exc:
            raise StreamsFailed(f"the double did not start {stream.stream_sid}: {exc}") from None
        durations[stream.stream_sid] = int(started["audio"]["duration_ms"])
    return durations


async def streams_sent(ctl: AsyncDoubleControl, plan: DemoPlan, wait_s: float) -> StreamsSent:
    """How many streams the double sent whole, waiting up to ``wait_s`` for each to end."""
    whole, problems = 0, []
    for stream in plan.streams:
        result = await ctl.stream(stream.stream_sid, wait_s=wait_s)
        if result["state"] == "completed":
            whole += 1
        else:
            problems.append(f"{stream.stream_sid}: {result['state']} ({result['error']})")
    return StreamsSent(whole, tuple(problems))
