"""A faust worker whose one guarded agent copies SOURCE to SINK, and can be made to drop records.

Run as ``python -m tests.integration.plumbing.stall_probe APP_ID SOURCE SINK``. After it copies a
record whose value is ``drop-what-follows``, it moves faust's read offset of that partition far
ahead: faust's drain loop then skips every later record of the partition without handing it on,
which is how faust 0.15 loses records at a handover (see ``workers/plumbing/offset_guard.py``).
Only the guard's stall check can bring those records back.
"""

from __future__ import annotations

import sys

import faust

from workers.config import Settings
from workers.plumbing.faust_app import new_app
from workers.plumbing.offset_guard import continuity_guard, guarded_events

DROP = b"drop-what-follows"


def build(app_id: str, source: str, sink: str) -> faust.App:
    settings = Settings.from_env()
    app = new_app(app_id, settings, replication=1, topic_partitions=1)
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source_topic = app.topic(source, partitions=1, **raw)
    sink_topic = app.topic(sink, partitions=1, **raw)

    @app.agent(source_topic)
    async def copy(stream: faust.StreamT) -> None:
        manual = stream.noack()
        async with continuity_guard(app, settings) as guard:
            async for event in guarded_events(manual, guard):
                delivery = await sink_topic.send(key=event.key, value=event.value)
                await delivery
                if event.value == DROP:
                    message = event.message
                    app.consumer._read_offset[message.tp] = message.offset + 1000
                await manual.ack(event)

    return app


if __name__ == "__main__":
    app_id, source, sink = sys.argv[1:4]
    faust.Worker(build(app_id, source, sink), loglevel="info").execute_from_commandline()
