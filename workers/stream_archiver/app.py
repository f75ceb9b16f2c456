"""``exopipe worker stream-archiver``: the faust app that archives live streams to S3 as WAVs.

Clients are created once per process (the boto3 client here); the spill directory is opened
when the agent starts and removed when it stops. Nothing here reads the environment.
"""

from __future__ import annotations

from typing import Any

import faust

from topics.catalog import STREAM_ARCHIVED
from topics.catalog import STREAM_AUDIO as SOURCE
from topics.events import CloudEvent
from workers.archiver.store import MIN_PART_SIZE, RecordingStore
from workers.config import Settings
from workers.errors import ConfigError
from workers.plumbing.faust_app import catalog_topic, new_app
from workers.plumbing.offset_guard import continuity_guard
from workers.retry import RetryPolicy
from workers.s3 import new_s3_client
from workers.stream_archiver.agents import register_stream_agent, running_archivist
from workers.stream_archiver.archive import StreamArchive
from workers.stream_archiver.spill import SpillDir

__all__ = ["create_app"]


def create_app(settings: Settings, replication: int) -> faust.App:
    config = settings.stream_archiver
    if config.part_size < MIN_PART_SIZE:
        raise ConfigError(f"EXOPIPE_STREAM_ARCHIVER_PART_SIZE must be >= {MIN_PART_SIZE}")
    if config.concurrency < 1 or config.quiet_seconds <= 0:
        raise ConfigError(
            "EXOPIPE_STREAM_ARCHIVER_CONCURRENCY must be >= 1 and "
            "EXOPIPE_STREAM_ARCHIVER_QUIET_SECONDS > 0"
        )
    app = new_app(
        "stream-archiver",
        settings,
        replication,
        broker_session_timeout=config.session_timeout,
        broker_heartbeat_interval=min(3.0, config.session_timeout / 3),
    )
    client = new_s3_client(settings, max_pool_connections=max(32, config.parts_in_flight + 16))
    store = RecordingStore(client, settings.s3_bucket, config.part_size, config.parts_in_flight)
    # max_attempts only paces the warnings: the store is tried for as long as it fails.
    policy = RetryPolicy(
        max_attempts=5, base_delay=config.retry_base_delay, max_delay=config.retry_max_delay
    )
    archived = catalog_topic(app, settings, STREAM_ARCHIVED)

    async def publish(event: CloudEvent) -> Any:
        delivery = await archived.send(
            key=event.data["stream_sid"].encode(), value=event.to_bytes()
        )
        return await delivery  # acks=all: on every in-sync replica before offsets move

    register_stream_agent(
        app,
        catalog_topic(app, settings, SOURCE),
        make_guard=lambda: continuity_guard(app, settings),
        make_archivist=lambda: running_archivist(
            app=app,
            spill=SpillDir(config.spill_dir / app.conf.id),
            archive=StreamArchive(store, policy),
            publish=publish,
            quiet_s=config.quiet_seconds,
            concurrency=config.concurrency,
        ),
    )
    return app
