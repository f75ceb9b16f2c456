"""Stream plumbing: the Kafka machinery under the workers' logic, and nothing of that logic.

- ``batch_worker`` and ``changelog_store``: the batch core (aiokafka) the enricher runs on:
  read a batch, handle it in memory, write outputs and state changes, commit.
- ``faust_app``, ``offset_guard``, ``ordered_acks``, ``recovery_watch``, ``worker_metrics`` and
  ``ops_http``: what the faust workers (archiver, settings, stream archiver) need around faust,
  each work-around naming the faust-streaming bug it works around.

Nothing here knows about calls, recordings or settings: that lives in each worker's package.
"""

from __future__ import annotations

__all__: list[str] = []
