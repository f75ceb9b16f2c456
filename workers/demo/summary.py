"""The demo's verdict: expected versus seen, as rows and as a printed table (pure, no I/O).

The exit status is decided here, from the same rows the table prints: every row must match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.demo.observe import Observed
from workers.demo.plan import DemoPlan

__all__ = ["Row", "check", "render"]

_EXAMPLES = 3


@dataclass(frozen=True)
class Row:
    what: str
    expected: int
    seen: int

    @property
    def ok(self) -> bool:
        return self.expected == self.seen


def check(
    plan: DemoPlan,
    seen: Observed,
    *,
    delivered: int,
    recording_sha256: Mapping[str, str],
    streams_sent: int = 0,
    stream_duration_ms: Mapping[str, int] | None = None,
) -> list[Row]:
    """One row per count the demo promises; ``delivered`` is how many webhooks got a 2xx,
    ``streams_sent`` how many streams the double sent whole, ``stream_duration_ms`` the audio
    each stream carried (an archived WAV must last exactly that)."""
    applied = sum(1 for r in seen.results.values() if r.get("outcome") == "applied")
    intact = sum(
        1
        for sid, data in seen.archived.items()
        if recording_sha256.get(sid) is not None and data.get("sha256") == recording_sha256[sid]
    )
    durations = stream_duration_ms or {}
    whole = sum(
        1
        for sid, data in seen.streams.items()
        if durations.get(sid) is not None and data.get("duration_ms") == durations[sid]
    )
    stream_rows = [
        Row("streams sent whole (double)", len(plan.streams), streams_sent),
        Row("streams archived (duration ok)", len(plan.streams), whole),
    ]
    return [
        Row("settings applied", len(plan.app_ids), applied),
        Row("webhooks answered 2xx", plan.webhook_count, delivered),
        Row("webhooks accepted (on Kafka)", plan.webhook_count, len(seen.webhooks)),
        Row("missed calls enriched", plan.count("missed"), len(seen.enriched)),
        Row("recordings archived (sha256 ok)", plan.count("recorded"), intact),
        Row("webhooks rejected", 0, seen.rejected),
        Row("recordings failed", 0, len(seen.failed)),
        *(stream_rows if plan.streams else []),
    ]


def render(plan: DemoPlan, rows: list[Row], seen: Observed, seconds: float) -> str:
    kinds = ", ".join(f"{plan.count(k)} {k}" for k in ("answered", "missed", "recorded"))
    lines = [
        f"exopipe demo: {len(plan.calls)} calls ({kinds}) on {len(plan.app_ids)} apps "
        f"of customer {plan.customer_id}, {seconds:.1f}s",
        "",
        f"  {'':34} {'expected':>8} {'seen':>6}",
    ]
    for row in rows:
        mark = "ok" if row.ok else "MISMATCH"
        lines.append(f"  {row.what:34} {row.expected:>8} {row.seen:>6}  {mark}")
    if seen.enriched:
        lines += ["", "missed calls enriched (examples):"]
        lines.append(f"  {'call_sid':24} {'caller':15} {'app':6} {'priority':8} repeats  popup")
        for data in sorted(seen.enriched.values(), key=lambda d: d["call_sid"])[:_EXAMPLES]:
            lines.append(
                f"  {data['call_sid']:24} {_caller(data):15} {data['app_id']:6} "
                f"{data['priority']:8} {data['repeat_count_24h']:>7}  {data['popup_seen']}"
            )
    if seen.archived:
        lines += ["", "recordings archived:"]
        for data in sorted(seen.archived.values(), key=lambda d: d["call_sid"]):
            lines.append(f"  {data['call_sid']:24} {data['size_bytes']:>7} B  {data['uri']}")
    if plan.streams:
        lines += ["", f"streams archived {len(seen.streams)}/{len(plan.streams)}:"]
        for data in sorted(seen.streams.values(), key=lambda d: d["stream_sid"]):
            seconds = data["duration_ms"] / 1000
            lines.append(
                f"  {data['stream_sid']:24} {seconds:6.2f} s  {data['sample_rate']} Hz  "
                f"{data['size_bytes']:>7} B  {data['uri']}"
            )
    verdict = "all counts match" if all(r.ok for r in rows) else "COUNTS DO NOT MATCH"
    lines += ["", f"result: {verdict}"]
    return "\n".join(lines)


def _caller(data: dict[str, Any]) -> str:
    caller = data.get("caller")
    if isinstance(caller, dict):
        return str(caller.get("e164") or caller.get("raw") or "?")
    return str(caller)
