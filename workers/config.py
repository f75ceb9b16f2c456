"""The one place configuration is read: ``EXOPIPE_*`` environment variables into a frozen object.

Nothing else in the project reads ``os.environ`` for its own settings. Build a
:class:`Settings` once at start-up with :meth:`Settings.from_env` and pass it down. S3
credentials are not ours to read: boto3 takes them from its standard variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) or its other sources.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from topics.catalog import TopicSpec
from workers import json_codec
from workers.errors import ConfigError

__all__ = [
    "DEFAULT_EXOTEL_BASE_URL",
    "ApplierSettings",
    "EnricherSettings",
    "IngressSettings",
    "RecordingSettings",
    "Settings",
    "StackSettings",
    "StreamArchiverSettings",
]

DEFAULT_EXOTEL_BASE_URL = "https://integrationscore.mum1.exotel.com/v2/integrations"
_PREFIX = "EXOPIPE_"


def _default_stack_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "exopipe"


@dataclass(frozen=True)
class StackSettings:
    """Where and on which loopback ports ``exopipe stack`` runs Kafka, S3Proxy and the double."""

    # Jars, data, logs and pid files of the local stack (outside the repo).
    home: Path = field(default_factory=_default_stack_home)
    # Local stack: the loopback address every service binds.
    host: str = "127.0.0.1"
    # Local stack: Kafka's client port.
    kafka_port: int = 9092
    # Local stack: the KRaft controller's port.
    controller_port: int = 9093
    # Local stack: S3Proxy's port.
    s3_port: int = 9000
    # Local stack: the Exotel API double's port.
    exotel_port: int = 8090
    # Local stack: org.apache.kafka:kafka_2.13 version.
    kafka_version: str = "4.4.0"
    # Local stack: org.gaul:s3proxy version.
    s3proxy_version: str = "4.1.0"


@dataclass(frozen=True)
class IngressSettings:
    """The webhook ingress (``EXOPIPE_INGRESS_*``)."""

    # Address the ingress listens on.
    host: str = "127.0.0.1"
    # Port the ingress listens on.
    port: int = 8080
    # Where webhooks wait, fsynced, while Kafka does not acknowledge in time. One per process.
    spool_dir: Path = field(default_factory=lambda: _default_stack_home() / "ingress-spool")
    # Spool bound; when full the ingress answers 503 with Retry-After.
    spool_max_bytes: int = 256 * 1024 * 1024
    # Exotel gives up after 15 s: past this bound the record goes to the spool instead.
    produce_timeout_s: float = 2.0
    # Largest webhook body accepted (413 beyond it, chunked bodies too).
    body_limit_bytes: int = 64 * 1024
    # Seconds a whole body may take to arrive (408 beyond it): a sender trickling bytes
    # (slowloris) must not hold a connection and a handler forever. Exotel sends in well under 1 s.
    body_timeout_s: float = 10.0
    # How much of a refused body a rejected record keeps.
    rejected_body_bytes: int = 8 * 1024
    # Per tenant (customer): sustained requests per second and burst; 0 turns the limit off.
    rate_limit_per_s: float = 100.0
    # Requests a tenant may send at once above its sustained rate.
    rate_limit_burst: int = 200
    # Sender addresses allowed (CIDRs, comma separated); empty allows any address.
    allowed_cidrs: tuple[str, ...] = ()
    # The zone of Exotel's zone-less "YYYY-MM-DD HH:mm:ss" times (DateUpdated, StartTime).
    local_timezone: str = "Asia/Kolkata"
    # SIGTERM: how long in-flight requests and unacknowledged sends get before the process exits.
    shutdown_timeout_s: float = 10.0
    # Live audio: largest WebSocket frame (close 1009 beyond it). Exotel's largest chunk, 100 KB
    # of audio, is a frame of about 137 KB once base64-encoded.
    stream_max_frame_bytes: int = 256 * 1024
    # Live audio: seconds without a frame before the ingress closes the stream (code 4408).
    stream_idle_timeout_s: float = 30.0
    # Live audio: longest stream in seconds (code 1008 past it); Exotel's last up to 60 min.
    stream_max_session_s: float = 3900.0
    # Live audio: concurrent streams per customer; one more is answered 429 before the upgrade.
    stream_max_per_tenant: int = 100
    # Live audio: the base URL Exotel reaches the ingress at (https://host[/prefix], or wss://);
    # the dynamic stream endpoint answers with the stream URL on it. Empty: ws://HOST:PORT.
    public_url: str = ""
    # Live audio: concurrent streams for the whole process, all customers together; one more is
    # answered 429 before the upgrade. Each takes about 1 MB at worst (its 512 KiB read buffer).
    stream_max_open: int = 1000


@dataclass(frozen=True)
class ApplierSettings:
    """The settings worker that applies commands through the API (``EXOPIPE_APPLIER_*``)."""

    # Concurrent App Settings API calls (one per app at a time; other apps in parallel).
    in_flight: int = 32
    # Commands held un-committed at once (in flight + queued behind their app); the agent stops
    # reading its partitions when this many are pending.
    max_pending: int = 1000
    # Attempts per command for 5xx, 429 and network errors.
    retry_attempts: int = 5
    # First backoff delay in seconds (doubles, with jitter).
    retry_base_delay: float = 0.5
    # Longest backoff delay in seconds (Retry-After is capped here too).
    retry_max_delay: float = 30.0
    # Per phase (connect, read, write, pool) of every API call, in seconds.
    http_timeout: float = 10.0
    # Connect timeout of every API call, in seconds.
    http_connect_timeout: float = 5.0
    # HTTP/1.1 connections per httpx client; the in-flight calls are spread over
    # ceil(in_flight / this) clients (httpcore's per-request cost grows with its pool's size).
    http_pool_size: int = 8
    # Seconds between reconciliations (GET every known app, publish drift); 0 turns it off.
    reconcile_interval: float = 300.0
    # Bytes of a non-JSON command kept in its `invalid` result.
    raw_cap_bytes: int = 4096
    # Seconds a command id is remembered for de-duplication (default: the topic's 7 days).
    dedup_retention: float = 7 * 24 * 3600.0
    # Seconds without a heartbeat before Kafka gives a dead worker's partitions to another
    # (the broker's group.min.session.timeout.ms, 6 s by default, is the floor).
    session_timeout: float = 30.0


@dataclass(frozen=True)
class RecordingSettings:
    """The recording archiver (``EXOPIPE_RECORDING_*``).

    ``hosts`` is the SSRF allowlist (exact names, or ``*.suffix``); ``ports`` the ports a
    recording URL may name. ``allow_insecure`` admits plain http and loopback addresses, for local
    development and tests only. Disk use is at most ``concurrency`` x ``max_bytes`` in ``temp_dir``.
    """

    # Admit plain http and loopback recording URLs (local development and tests only).
    allow_insecure: bool = False
    # Recording hosts allowed (exact names or *.suffix), comma separated.
    hosts: tuple[str, ...] = (
        "recordings.exotel.com",
        "s3-ap-southeast-1.amazonaws.com",
        "s3.ap-southeast-1.amazonaws.com",
        "exotelrecordings.s3.amazonaws.com",
    )
    # Ports a recording URL may name, comma separated.
    ports: tuple[str, ...] = ("80", "443")
    # Largest recording, counted on the bytes actually read.
    max_bytes: int = 1024 * 1024 * 1024
    # S3 multipart part size in bytes.
    part_size: int = 16 * 1024 * 1024
    # Multipart parts in memory and in flight at once, shared by every upload of the worker:
    # memory for parts is at most this times part_size, whatever the concurrency and sizes.
    parts_in_flight: int = 4
    # Recordings archived at once per worker.
    concurrency: int = 4
    # Recording download: connect timeout in seconds.
    connect_timeout: float = 10.0
    # Recording download: longest wait for the next bytes, in seconds.
    read_timeout: float = 30.0
    # Recording download: whole-download deadline in seconds.
    total_timeout: float = 900.0
    # Redirects followed, each re-checked by the SSRF guard.
    max_redirects: int = 3
    # Attempts per recording for transient failures.
    attempts: int = 5
    # First backoff delay in seconds (doubles, with jitter).
    retry_base_delay: float = 1.0
    # Longest backoff delay in seconds.
    retry_max_delay: float = 60.0
    # Where downloads are staged (the system temp dir when empty).
    temp_dir: Path | None = None
    # First segment of every object key.
    key_prefix: str = "recordings"
    # How long the group waits for a silent (crashed) archiver before its partitions, and the
    # unfinished recordings on them, move to another worker.
    session_timeout: float = 60.0


@dataclass(frozen=True)
class EnricherSettings:
    """The missed-call enricher (``EXOPIPE_ENRICHER_*``).

    ``business_hours`` is JSON: ``{"<customer_id>" or "*": {"timezone": "Asia/Kolkata",
    "hours": {"mon-fri": "09:30-18:00", "sat": "10:00-14:00"}}}``; a customer with no entry
    (and no ``"*"``) gets ``within_business_hours: null``.
    """

    # Region for numbers written without a country code (Exotel sends 0-prefixed Indian ones).
    default_region: str = "IN"
    # How long a popup waits in the join table for its missed call.
    popup_ttl_seconds: float = 7200.0
    # How long a missed call with no popup yet is held for a late popup (0: never hold).
    grace_seconds: float = 3.0
    # How long a missed-call event id is remembered to drop redelivered duplicates.
    dedupe_ttl_seconds: float = 172800.0
    # Calls from the same caller to the same app within this many seconds count as repeats.
    repeat_window_seconds: float = 86400.0
    # Extra history kept per caller so a late (out of event-time order) call still counts right.
    late_slack_seconds: float = 3600.0
    # repeat_count_24h at or above this makes a caller a repeat caller for the priority rule.
    repeat_threshold: int = 2
    # How often held calls and expired table entries are looked at.
    tick_seconds: float = 0.25
    # A crashed worker's partitions move to the others after this long without heartbeats.
    session_timeout_seconds: float = 30.0
    # Per-customer hours and timezone as JSON (see above); "*" for every other customer.
    business_hours: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamArchiverSettings:
    """The stream archiver (``EXOPIPE_STREAM_ARCHIVER_*``): live streams into one WAV each.

    Disk use is one spill file per open stream (about 57.6 MB for an hour at 8 kHz); memory does
    not grow with a stream's length.
    """

    # Where each open stream's audio waits until the stream ends (deleted once archived).
    spill_dir: Path = field(default_factory=lambda: _default_stack_home() / "stream-spill")
    # A stream with no record for this long and no `closed` (an ingress that crashed and did not
    # restart on its spool directory, which closes its streams) is archived with
    # end_reason "abandoned"; measured on the records' received_at, or, once the partition is
    # read to its end, on this worker's clock.
    quiet_seconds: float = 600.0
    # Finished streams uploaded at once per worker; reading waits while all are busy.
    concurrency: int = 4
    # S3 multipart part size in bytes (5 MiB at least).
    part_size: int = 8 * 1024 * 1024
    # Multipart parts in memory and on the wire at once, shared by every upload of the worker.
    parts_in_flight: int = 4
    # First backoff delay in seconds while the object store fails (doubles, with jitter).
    retry_base_delay: float = 1.0
    # Longest backoff delay in seconds; the store is tried again for as long as it fails.
    retry_max_delay: float = 30.0
    # How long the group waits for a silent (crashed) stream archiver before its partitions,
    # and the streams open on them, move to another worker.
    session_timeout: float = 30.0


# Sections of Settings and the variable prefix (after EXOPIPE_) of each.
_SECTIONS: dict[str, str] = {
    "stack": "STACK_",
    "ingress": "INGRESS_",
    "applier": "APPLIER_",
    "recording": "RECORDING_",
    "enricher": "ENRICHER_",
    "stream_archiver": "STREAM_ARCHIVER_",
}


@dataclass(frozen=True)
class Settings:
    """Every knob of the pipeline, with the default a new user wants."""

    # Kafka bootstrap servers, comma separated (host:port).
    kafka_bootstrap: str = "127.0.0.1:9092"
    # S3-compatible endpoint; empty means AWS S3 itself.
    s3_endpoint_url: str | None = None
    # Bucket the archivers write recordings and stream WAVs to.
    s3_bucket: str = "exotel-recordings"
    # Base URL of Exotel's App Settings API (the double's on the local stack).
    exotel_base_url: str = DEFAULT_EXOTEL_BASE_URL
    # JSON file with app tokens, ingress secrets and recording credentials.
    secrets_file: Path | None = None
    # Python log level of every process.
    log_level: str = "INFO"
    # "text" (for people) or "json" (one JSON object per line, for log shippers): workers/logs.py.
    log_format: str = "text"
    # Topics are declared with a production replication factor; apply caps it at the broker count.
    topic_replication_factor: int | None = None
    # Prepended to every catalog topic name, to run several environments (or tests) on one
    # cluster. Empty in production: the catalog's names are the public contract.
    topic_prefix: str = ""
    # Every worker's /healthz, /readyz and /metrics (workers/plumbing/ops_http.py); port 0 turns
    # them off, the default, since several workers on one machine would want the same port.
    worker_http_host: str = "127.0.0.1"
    # Port of every worker's ops endpoints (0: off).
    worker_http_port: int = 0
    # Where faust workers keep their per-app directory (tables are in memory, rebuilt from
    # their changelogs; this holds faust's bookkeeping only).
    worker_data_dir: Path = field(default_factory=lambda: _default_stack_home() / "worker-data")
    stack: StackSettings = field(default_factory=StackSettings)
    ingress: IngressSettings = field(default_factory=IngressSettings)
    applier: ApplierSettings = field(default_factory=ApplierSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    enricher: EnricherSettings = field(default_factory=EnricherSettings)
    stream_archiver: StreamArchiverSettings = field(default_factory=StreamArchiverSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``EXOPIPE_*`` variables; unknown ``EXOPIPE_*`` names are an error."""
        env = os.environ if environ is None else environ
        known = _known_variables()
        values: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
        values[""] = {}
        for name, raw in env.items():
            if not name.startswith(_PREFIX):
                continue
            if name not in known:
                raise ConfigError(
                    f"unknown setting {name}; see the README for the EXOPIPE_* variables"
                )
            section, f = known[name]
            values[section][f.name] = _coerce(name, raw, f.type)
        sections = {section: _section_types()[section](**values[section]) for section in _SECTIONS}
        return cls(**values[""], **sections)

    def topic(self, spec: TopicSpec) -> TopicSpec:
        """The catalog declaration as this deployment names it (``topic_prefix`` applied)."""
        return spec.with_prefix(self.topic_prefix)

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every variable name :meth:`from_env` understands (for docs and deploy checks)."""
        return frozenset(_known_variables())


def _section_types() -> dict[str, type]:
    hints = {f.name: f for f in fields(Settings)}
    return {section: hints[section].default_factory for section in _SECTIONS}  # type: ignore[misc]


def _known_variables() -> dict[str, tuple[str, Field[Any]]]:
    known: dict[str, tuple[str, Field[Any]]] = {}
    for f in fields(Settings):
        if f.name not in _SECTIONS:
            known[f"{_PREFIX}{f.name.upper()}"] = ("", f)
    for section, prefix in _SECTIONS.items():
        for f in fields(_section_types()[section]):
            known[f"{_PREFIX}{prefix}{f.name.upper()}"] = (section, f)
    return known


def _coerce(name: str, raw: str, annotation: Any) -> Any:
    """Turn an environment string into the field's type, with an error that names the variable."""
    kind = str(annotation)
    raw = raw.strip()
    optional = "None" in kind
    if optional and raw == "":
        return None
    try:
        if kind.startswith("int") or kind.startswith("int |"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("bool"):
            lowered = raw.lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind.startswith("Path"):
            return Path(raw).expanduser()
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind.startswith("dict"):
            value = json_codec.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
            return value
    except (ValueError, json_codec.JSONDecodeError):
        raise ConfigError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
