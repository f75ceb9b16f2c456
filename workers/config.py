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
]

DEFAULT_EXOTEL_BASE_URL = "https://integrationscore.mum1.exotel.com/v2/integrations"
_PREFIX = "EXOPIPE_"


def _default_stack_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "exopipe"


@dataclass(frozen=True)
class StackSettings:
    """Where and on which loopback ports ``exopipe stack`` runs Kafka, S3Proxy and the double."""

    home: Path = field(default_factory=_default_stack_home)
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    controller_port: int = 9093
    s3_port: int = 9000
    exotel_port: int = 8090
    kafka_version: str = "4.4.0"
    s3proxy_version: str = "4.1.0"


@dataclass(frozen=True)
class IngressSettings:
    """The webhook ingress (``EXOPIPE_INGRESS_*``)."""

    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class ApplierSettings:
    """The settings worker that applies commands through the API (``EXOPIPE_APPLIER_*``)."""


@dataclass(frozen=True)
class RecordingSettings:
    """The recording archiver (``EXOPIPE_RECORDING_*``)."""


@dataclass(frozen=True)
class EnricherSettings:
    """The missed-call enricher (``EXOPIPE_ENRICHER_*``)."""


# Sections of Settings and the variable prefix (after EXOPIPE_) of each.
_SECTIONS: dict[str, str] = {
    "stack": "STACK_",
    "ingress": "INGRESS_",
    "applier": "APPLIER_",
    "recording": "RECORDING_",
    "enricher": "ENRICHER_",
}


@dataclass(frozen=True)
class Settings:
    """Every knob of the pipeline, with the default a new user wants."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "exotel-recordings"
    exotel_base_url: str = DEFAULT_EXOTEL_BASE_URL
    secrets_file: Path | None = None
    log_level: str = "INFO"
    # Topics are declared with a production replication factor; apply caps it at the broker count.
    topic_replication_factor: int | None = None
    # Prepended to every catalog topic name, to run several environments (or tests) on one
    # cluster. Empty in production: the catalog's names are the public contract.
    topic_prefix: str = ""
    stack: StackSettings = field(default_factory=StackSettings)
    ingress: IngressSettings = field(default_factory=IngressSettings)
    applier: ApplierSettings = field(default_factory=ApplierSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    enricher: EnricherSettings = field(default_factory=EnricherSettings)

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
