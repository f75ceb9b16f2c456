"""A tiny faust worker for the smoke test: counts records per key in a changelog-backed table.

Run as ``python -m tests.integration.plumbing.faust_probe APP_ID SOURCE SINK PARTITIONS``;
after each record it sends the key's new count to SINK, so the test can see what the table holds.
"""

from __future__ import annotations

import sys

import faust

from workers.config import Settings
from workers.plumbing.faust_app import new_app
from workers.plumbing.offset_guard import continuity_guard, guarded_events


def build(app_id: str, source: str, sink: str, partitions: int) -> faust.App:
    settings = Settings.from_env()
    app = new_app(app_id, settings, replication=1, topic_partitions=partitions)
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source_topic = app.topic(source, partitions=partitions, **raw)
    sink_topic = app.topic(sink, partitions=partitions, **raw)
    # Table keys are str (JSON in the changelog): raw bytes keys are written in a form that
    # faust's recovery cannot read back, and a restarted worker then hangs in recovery.
    counts = app.Table("counts", default=int, partitions=partitions, key_type=str, value_type=int)

    @app.agent(source_topic)
    async def count(stream: faust.StreamT) -> None:
        # Read as every worker reads: through the continuity guard, acked once the count is on
        # Kafka. A bare faust agent can drop the first records after a restart's rebalance for
        # good (the record after a restart was never counted in one CI run).
        manual = stream.noack()
        async with continuity_guard(app, settings) as guard:
            async for event in guarded_events(manual, guard):
                name = event.key.decode()
                counts[name] += 1
                delivery = await sink_topic.send(key=event.key, value=str(counts[name]).encode())
                await delivery
                await manual.ack(event)

    return app


if __name__ == "__main__":
    app_id, source, sink, partitions = sys.argv[1:5]
    faust.Worker(
        build(app_id, source, sink, int(partitions)), loglevel="info"
    ).execute_from_commandline()
