"""A tiny faust worker for the smoke test: counts records per key in a changelog-backed table.

Run as ``python -m tests.integration.faust_probe APP_ID SOURCE SINK PARTITIONS``; after each
record it sends the key's new count to SINK, so the test can see what the table holds.
"""

from __future__ import annotations

import sys

import faust

from workers.config import Settings
from workers.faust_app import new_app


def build(app_id: str, source: str, sink: str, partitions: int) -> faust.App:
    app = new_app(app_id, Settings.from_env(), replication=1, topic_partitions=partitions)
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
        async for key, _value in stream.items():
            name = key.decode()
            counts[name] += 1
            await sink_topic.send(key=key, value=str(counts[name]).encode())

    return app


if __name__ == "__main__":
    app_id, source, sink, partitions = sys.argv[1:5]
    faust.Worker(
        build(app_id, source, sink, int(partitions)), loglevel="info"
    ).execute_from_commandline()
