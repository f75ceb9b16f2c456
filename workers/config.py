"""The one place configuration is read: ``EXOPIPE_*`` environment variables into a frozen object.

Nothing else in the project reads ``os.environ`` for its own settings. Build a
:class:`Settings` once at start-up with :meth:`Settings.from_env` and pass it down. S3
credentials are not ours to read: boto3 takes them from its standard variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) or its other sources.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from topics.catalog import TopicSpec
from workers.errors import ConfigError

__all__ = ["DEFAULT_EXOTEL_BASE_URL", "Settings", "StackSettings"]

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
    kafka_version: str = "4.1.1"
    s3proxy_version: str = "2.6.0"


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``EXOPIPE_*`` variables; unknown ``EXOPIPE_*`` names are an error."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        stack_values: dict[str, Any] = {}
        known = {f"{_PREFIX}{f.name.upper()}": f for f in fields(cls) if f.name != "stack"}
        stack_known = {f"{_PREFIX}STACK_{f.name.upper()}": f for f in fields(StackSettings)}
        for name, raw in env.items():
            if not name.startswith(_PREFIX):
                continue
            if name in known:
                f = known[name]
                values[f.name] = _coerce(name, raw, f.type)
            elif name in stack_known:
                f = stack_known[name]
                stack_values[f.name] = _coerce(name, raw, f.type)
            else:
                raise ConfigError(f"unknown setting {name}; known: {', '.join(sorted(known))}")
        return cls(**values, stack=StackSettings(**stack_values))

    def topic(self, spec: TopicSpec) -> TopicSpec:
        """The catalog declaration as this deployment names it (``topic_prefix`` applied)."""
        return spec.with_prefix(self.topic_prefix)

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every variable name :meth:`from_env` understands (for docs and deploy checks)."""
        names = {f"{_PREFIX}{f.name.upper()}" for f in fields(cls) if f.name != "stack"}
        names |= {f"{_PREFIX}STACK_{f.name.upper()}" for f in fields(StackSettings)}
        return frozenset(names)


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
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
