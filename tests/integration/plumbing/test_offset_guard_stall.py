"""The continuity guard's stall check on the real broker, in a real faust worker: records faust
dropped with nothing after them in their partition are fetched again and processed, in order,
once each. Without the check they would never be processed (nothing later reveals the gap)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import PipelineEnv
from tests.integration.plumbing.probes import (
    new_probe_topics,
    send,
    sink_values,
    start_probe,
    stop_probe,
)
from tests.integration.plumbing.stall_probe import DROP
from workers.plumbing.offset_guard import STALL_AFTER_S


@pytest.mark.slow
async def test_records_dropped_at_the_end_of_a_partition_are_fetched_again(
    pipeline_env: PipelineEnv, tmp_path: Path
) -> None:
    app_id, source, sink = await new_probe_topics(pipeline_env, "stall")
    log_path = tmp_path / "probe.log"
    worker = start_probe(pipeline_env, "stall_probe", [app_id, source, sink], log_path)
    try:
        await send(pipeline_env, source, [(b"k", b"a"), (b"k", DROP)])
        assert await sink_values(pipeline_env, sink, 2, within_s=60) == [b"a", DROP]
        # faust now skips what follows in the partition; nothing after it reveals the gap.
        await send(pipeline_env, source, [(b"k", b"b"), (b"k", b"c"), (b"k", b"d")])
        copied = await sink_values(pipeline_env, sink, 5, within_s=STALL_AFTER_S + 30)
        assert copied == [b"a", DROP, b"b", b"c", b"d"], log_path.read_text(errors="replace")
        # And nothing is copied twice after the seek.
        await asyncio.sleep(3)
        assert await sink_values(pipeline_env, sink, 6, within_s=2) == copied
        assert "seeking back to 2" in log_path.read_text(errors="replace")
    finally:
        stop_probe(worker)
