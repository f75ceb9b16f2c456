"""The recovery watch on the real broker, in a real faust worker: a table recovery whose
changelog records are all dropped (faust's read offset left past them) is sought again and
completes, with the table as it was. Without the watch the worker would wait forever."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PipelineEnv
from tests.integration.plumbing import probes
from tests.integration.plumbing.recovery_probe import STALL_AFTER_S


@pytest.mark.slow
async def test_a_recovery_that_receives_nothing_is_sought_again_and_completes(
    pipeline_env: PipelineEnv, tmp_path: Path
) -> None:
    app_id, source, sink = await probes.new_probe_topics(pipeline_env, "recovery")
    log_path = tmp_path / "probe.log"
    args = [app_id, source, sink]
    first = probes.start_probe(pipeline_env, "recovery_probe", args, log_path)
    try:
        await probes.send(pipeline_env, source, [(b"a", b"x")] * 3)
        assert await probes.sink_values(pipeline_env, sink, 3, within_s=60) == [b"1", b"2", b"3"]
    finally:
        assert probes.stop_probe(first) == 0
    # Restarted, it recovers the table from its changelog, and that recovery receives nothing.
    second = probes.start_probe(pipeline_env, "recovery_probe", [*args, "lose"], log_path)
    try:
        await probes.send(pipeline_env, source, [(b"a", b"x")])
        counts = await probes.sink_values(pipeline_env, sink, 4, within_s=STALL_AFTER_S + 60)
        log = log_path.read_text(errors="replace")
        assert counts == [b"1", b"2", b"3", b"4"], log[-4000:]  # 4: the table came back whole
        assert "table recovery has read nothing for" in log
        assert "No event received for active tp" not in log.split("seeking them again")[-1]
    finally:
        probes.stop_probe(second)
