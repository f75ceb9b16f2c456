"""The demo's plan and verdict: what it promises to check, without a broker."""

from __future__ import annotations

from workers.demo.observe import Observed
from workers.demo.plan import SETTING_FOR_KIND, make_plan, stream_url
from workers.demo.summary import check, render

BASE = "http://127.0.0.1:8090/recordings"


def test_plan_cycles_call_kinds_and_counts_webhooks() -> None:
    plan = make_plan("r1", 7, BASE)
    assert [c.kind for c in plan.calls] == [
        "answered", "missed", "recorded", "answered", "missed", "recorded", "answered",
    ]  # fmt: skip
    assert plan.webhook_count == 3 * 2 + 2 * 3 + 2 * 3
    assert len(plan.call_sids) == 7
    assert {c.app_id for c in plan.calls} == {"app-1", "app-2"}
    recorded = [c for c in plan.calls if c.kind == "recorded"]
    for call in recorded:
        urls = {
            h.fields.get("recording_url") or h.fields.get("RecordingUrl") for h in call.webhooks
        }
        assert f"{BASE}/{call.recording_name}" in urls
    for call in plan.calls:
        assert call.webhooks[0].kind == "incoming_call"  # the popup always comes first
        assert all(h.setting in SETTING_FOR_KIND.values() for h in call.webhooks)


def _seen_for(plan, sha: dict[str, str]) -> Observed:
    seen = Observed()
    seen.results = {f"c{i}": {"outcome": "applied"} for i, _ in enumerate(plan.app_ids)}
    for i in range(plan.webhook_count):
        seen.webhooks[f"e{i}"] = {}
    for call in plan.calls:
        if call.kind == "missed":
            seen.enriched[call.call_sid] = {
                "call_sid": call.call_sid,
                "caller": {"e164": call.caller},
                "app_id": call.app_id,
                "priority": "low",
                "repeat_count_24h": 1,
                "popup_seen": True,
            }
        if call.kind == "recorded":
            seen.archived[call.call_sid] = {
                "call_sid": call.call_sid,
                "sha256": sha[call.call_sid],
                "size_bytes": 10,
                "uri": f"s3://b/{call.call_sid}",
            }
    return seen


def test_every_row_matches_when_everything_arrived() -> None:
    plan = make_plan("r2", 6, BASE)
    sha = {c.call_sid: "ab" * 32 for c in plan.calls if c.kind == "recorded"}
    seen = _seen_for(plan, sha)
    rows = check(plan, seen, delivered=plan.webhook_count, recording_sha256=sha)
    assert all(row.ok for row in rows)
    text = render(plan, rows, seen, 1.0)
    assert "result: all counts match" in text
    assert text.count("s3://b/") == 2


def test_a_wrong_checksum_a_rejection_or_a_missing_result_is_a_mismatch() -> None:
    plan = make_plan("r3", 6, BASE)
    sha = {c.call_sid: "ab" * 32 for c in plan.calls if c.kind == "recorded"}
    seen = _seen_for(plan, {sid: "cd" * 32 for sid in sha})
    rows = {r.what: r for r in check(plan, seen, delivered=16, recording_sha256=sha)}
    assert not rows["recordings archived (sha256 ok)"].ok
    seen = _seen_for(plan, sha)
    seen.rejected = 1
    seen.results.popitem()
    rows = {r.what: r for r in check(plan, seen, delivered=15, recording_sha256=sha)}
    assert not rows["webhooks rejected"].ok
    assert not rows["settings applied"].ok
    assert not rows["webhooks answered 2xx"].ok
    assert "COUNTS DO NOT MATCH" in render(plan, list(rows.values()), seen, 1.0)


def test_streamed_calls_are_planned_on_the_apps_and_reach_the_ingress_with_basic_credentials() -> (
    None
):
    plan = make_plan("r4", 3, BASE, streams=3)
    assert [s.app_id for s in plan.streams] == ["app-1", "app-2", "app-1"]
    assert len(plan.stream_sids) == 3 and plan.streaming_apps == {"app-1", "app-2"}
    assert not plan.stream_sids & plan.call_sids
    assert make_plan("r5", 3, BASE).streams == ()
    url = stream_url("http://127.0.0.1:8080", "demo-r4", "app-1", "s3cr=t")
    assert url == "ws://demo-r4:s3cr%3Dt@127.0.0.1:8080/v1/demo-r4/app-1/stream"
    assert stream_url("https://in.example.com/base/", "c", "a", "s").startswith(
        "wss://c:s@in.example.com/base/v1/c/a/stream"
    )


def _archived_stream(sid: str, duration_ms: int) -> dict[str, object]:
    return {
        "stream_sid": sid,
        "duration_ms": duration_ms,
        "sample_rate": 8000,
        "size_bytes": 44 + duration_ms * 16,
        "uri": f"s3://b/streams/{sid}.wav",
    }


def test_a_stream_counts_once_archived_with_the_duration_it_was_sent_with() -> None:
    plan = make_plan("r6", 6, BASE, streams=1)
    sha = {c.call_sid: "ab" * 32 for c in plan.calls if c.kind == "recorded"}
    [sid] = plan.stream_sids
    seen = _seen_for(plan, sha)
    seen.streams[sid] = _archived_stream(sid, 4000)
    args = {"delivered": plan.webhook_count, "recording_sha256": sha}
    rows = check(plan, seen, **args, streams_sent=1, stream_duration_ms={sid: 4000})
    assert all(row.ok for row in rows)
    text = render(plan, rows, seen, 1.0)
    assert "streams archived 1/1:" in text
    assert "4.00 s  8000 Hz" in text
    short = {r.what: r for r in check(plan, seen, **args, stream_duration_ms={sid: 4200})}
    assert not short["streams archived (duration ok)"].ok
    assert not short["streams sent whole (double)"].ok
    seen.streams.clear()
    rows = check(plan, seen, **args, streams_sent=1, stream_duration_ms={sid: 4000})
    assert "streams archived 0/1:" in render(plan, rows, seen, 1.0)
    assert "COUNTS DO NOT MATCH" in render(plan, rows, seen, 1.0)
