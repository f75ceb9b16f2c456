"""Every Kafka topic of the pipeline, declared once. Topic names are a public contract.

Agents, the ingress, the CLI and the tests import these objects; nobody types a topic name as a
string. Changing a name, a key or a partition count is a change to the contract: do it through an
issue, never as a side effect.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "CATALOG",
    "MISSED_CALL_ENRICHED",
    "RECORDING_ARCHIVED",
    "RECORDING_FAILED",
    "SETTINGS_COMMAND",
    "SETTINGS_RESULT",
    "SETTINGS_STATE",
    "STREAM_ARCHIVED",
    "STREAM_AUDIO",
    "STREAM_EVENT",
    "WEBHOOK_CALL_STATUS",
    "WEBHOOK_INCOMING_CALL",
    "WEBHOOK_MISSED_CALL",
    "WEBHOOK_RECORDING_READY",
    "WEBHOOK_REJECTED",
    "TopicSpec",
    "by_name",
]

_DAY_MS = 24 * 60 * 60 * 1000

# Every topic keyed by call_sid shares one partition count, so that joins on call_sid
# (missed_call with incoming_call) are co-partitioned and faust tables updated from them get
# changelogs of the same width.
CALL_PARTITIONS = 6
APP_PARTITIONS = 6
# Keyed by stream_sid: each live stream stays in order on one partition.
STREAM_PARTITIONS = 6


@dataclass(frozen=True)
class TopicSpec:
    """One topic: how it is created, what its key is, and the schema of its events' ``data``."""

    name: str
    partitions: int
    replication_factor: int
    retention_ms: int | None
    cleanup_policy: str
    key: str
    schema: str
    event_type: str
    description: str

    def with_prefix(self, prefix: str) -> TopicSpec:
        """The same declaration under ``prefix + name`` (environments sharing one cluster)."""
        return self if not prefix else replace(self, name=prefix + self.name)

    def config(self) -> dict[str, str]:
        """Topic-level broker configs this declaration owns (the rest stay at broker defaults)."""
        configs = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        if self.cleanup_policy == "compact":
            # Keep the latest state per key; let the cleaner act soon on small local setups too.
            configs["min.cleanable.dirty.ratio"] = "0.1"
        return configs


def _topic(
    name: str,
    *,
    key: str,
    description: str,
    partitions: int = CALL_PARTITIONS,
    retention_days: int | None = 7,
    cleanup_policy: str = "delete",
) -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=partitions,
        replication_factor=3,
        retention_ms=None if retention_days is None else retention_days * _DAY_MS,
        cleanup_policy=cleanup_policy,
        key=key,
        schema=f"{name}.schema.json",
        event_type=f"com.exotel.pipeline.{name.removeprefix('exotel.')}",
        description=description,
    )


WEBHOOK_INCOMING_CALL = _topic(
    "exotel.webhook.incoming_call",
    key="call_sid",
    description="Popup webhooks: an inbound call arrived for a user.",
)
WEBHOOK_MISSED_CALL = _topic(
    "exotel.webhook.missed_call",
    key="call_sid",
    description="Missed-call webhooks: an inbound call was not answered.",
)
WEBHOOK_CALL_STATUS = _topic(
    "exotel.webhook.call_status",
    key="call_sid",
    description="Call status callbacks (callback_url, StatusCallback, Passthru).",
)
WEBHOOK_RECORDING_READY = _topic(
    "exotel.webhook.recording_ready",
    key="call_sid",
    description="Recording webhooks: a call recording can be fetched from recording_url.",
)
WEBHOOK_REJECTED = _topic(
    "exotel.webhook.rejected",
    key="customer_id/app_id, or the call_sid when known",
    description="Webhooks and events refused as invalid, with the raw body and the reason.",
    retention_days=30,
)
MISSED_CALL_ENRICHED = _topic(
    "exotel.missed_call.enriched",
    key="call_sid",
    description="Missed calls enriched for the callback team and analytics.",
    retention_days=30,
)
RECORDING_ARCHIVED = _topic(
    "exotel.recording.archived",
    key="call_sid",
    description="A recording is in object storage: bucket, key, size and sha256.",
    retention_days=30,
)
RECORDING_FAILED = _topic(
    "exotel.recording.failed",
    key="call_sid",
    description="A recording could not be archived (or was skipped), with the reason.",
    retention_days=30,
)
SETTINGS_COMMAND = _topic(
    "exotel.settings.command",
    key="customer_id/app_id",
    description="Requests to change an app's settings through the App Settings API.",
    partitions=APP_PARTITIONS,
)
SETTINGS_RESULT = _topic(
    "exotel.settings.result",
    key="customer_id/app_id",
    description="Exactly one final result per settings command.",
    partitions=APP_PARTITIONS,
    retention_days=30,
)
SETTINGS_STATE = _topic(
    "exotel.settings.state",
    key="customer_id/app_id",
    description="Latest known settings per app (compacted).",
    partitions=APP_PARTITIONS,
    retention_days=None,
    cleanup_policy="compact",
)
STREAM_AUDIO = _topic(
    "exotel.stream.audio",
    key="stream_sid",
    description="Every frame of a live audio stream, in order, media with their base64 payload.",
    partitions=STREAM_PARTITIONS,
    # Audio is heavy (about 43 KB/s a stream) and archived to S3 when the stream ends.
    retention_days=2,
)
STREAM_EVENT = _topic(
    "exotel.stream.event",
    key="stream_sid",
    description="A live stream's lifecycle: start, dtmf, mark, stop, and how its connection ended.",
    partitions=STREAM_PARTITIONS,
    retention_days=30,
)
STREAM_ARCHIVED = _topic(
    "exotel.stream.archived",
    key="stream_sid",
    description="A finished stream is one WAV object in object storage: bucket, key, sha256.",
    partitions=STREAM_PARTITIONS,
    retention_days=30,
)

CATALOG: tuple[TopicSpec, ...] = (
    WEBHOOK_INCOMING_CALL,
    WEBHOOK_MISSED_CALL,
    WEBHOOK_CALL_STATUS,
    WEBHOOK_RECORDING_READY,
    WEBHOOK_REJECTED,
    MISSED_CALL_ENRICHED,
    RECORDING_ARCHIVED,
    RECORDING_FAILED,
    SETTINGS_COMMAND,
    SETTINGS_RESULT,
    SETTINGS_STATE,
    STREAM_AUDIO,
    STREAM_EVENT,
    STREAM_ARCHIVED,
)

_BY_NAME = {spec.name: spec for spec in CATALOG}


def by_name(name: str) -> TopicSpec:
    """The declaration of a catalog topic; ``KeyError`` names the topic when it is not one."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a catalog topic") from None
