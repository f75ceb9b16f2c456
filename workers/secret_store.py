"""Secrets from ``EXOPIPE_SECRETS_FILE``: Exotel app tokens, ingress secrets, recording creds.

Secrets never come from Kafka and never print: every value is wrapped in :class:`Secret`, whose
``repr`` and ``str`` are masked. Call :meth:`Secret.reveal` only where the value leaves the process
(an ``Authorization`` header, a constant-time comparison).

File format (JSON)::

    {
      "exotel_apps": {"<customer_id>/<app_id>": "<app token>"},
      "ingress_tenants": {"<customer_id>": ["<secret>", "<next secret>"],
                          "<customer_id>/<app_id>": ["<secret>"]},
      "recording_hosts": {"recordings.exotel.com": {"username": "<api key>",
                                                     "password": "<api token>"}}
    }
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers import json_codec
from workers.errors import ConfigError

__all__ = ["BasicCredentials", "Secret", "SecretStore"]


class Secret:
    """A string that does not print."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison, so response timing tells nothing about the secret."""
        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class BasicCredentials:
    username: str
    password: Secret


@dataclass(frozen=True)
class SecretStore:
    """Loaded secrets, looked up by the identifiers the workers have in hand."""

    exotel_apps: dict[tuple[str, str], Secret] = field(default_factory=dict)
    ingress_tenants: dict[str, tuple[Secret, ...]] = field(default_factory=dict)
    recording_hosts: dict[str, BasicCredentials] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> SecretStore:
        """Read the secrets file; no path means no secrets (every lookup misses)."""
        if path is None:
            return cls()
        try:
            raw = json_codec.loads(Path(path).read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"secrets file {path} does not exist") from None
        except json_codec.JSONDecodeError as exc:
            raise ConfigError(f"secrets file {path} is not valid JSON: {exc}") from None
        return cls.from_mapping(raw, origin=str(path))

    @classmethod
    def from_mapping(cls, raw: Any, *, origin: str = "secrets") -> SecretStore:
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: top level must be an object")
        unknown = set(raw) - {"exotel_apps", "ingress_tenants", "recording_hosts"}
        if unknown:
            raise ConfigError(f"{origin}: unknown sections {sorted(unknown)}")
        apps: dict[tuple[str, str], Secret] = {}
        for key, token in _section(raw, "exotel_apps", origin).items():
            customer, sep, app = key.partition("/")
            if not sep or not customer or not app:
                raise ConfigError(f"{origin}: exotel_apps key {key!r} must be 'customer/app'")
            apps[(customer, app)] = _secret(token, f"{origin}: exotel_apps[{key!r}]")
        tenants: dict[str, tuple[Secret, ...]] = {}
        for key, secrets in _section(raw, "ingress_tenants", origin).items():
            if isinstance(secrets, str):
                secrets = [secrets]
            if not isinstance(secrets, list) or not 1 <= len(secrets) <= 2:
                raise ConfigError(
                    f"{origin}: ingress_tenants[{key!r}] must be one secret or a list of two"
                )
            where = f"{origin}: ingress_tenants[{key!r}]"
            tenants[key] = tuple(_secret(s, where) for s in secrets)
        hosts: dict[str, BasicCredentials] = {}
        for host, creds in _section(raw, "recording_hosts", origin).items():
            where = f"{origin}: recording_hosts[{host!r}]"
            if not isinstance(creds, dict) or not isinstance(creds.get("username"), str):
                raise ConfigError(f"{where} needs 'username' and 'password'")
            hosts[host.lower()] = BasicCredentials(
                creds["username"], _secret(creds.get("password"), where)
            )
        return cls(exotel_apps=apps, ingress_tenants=tenants, recording_hosts=hosts)

    def app_token(self, customer_id: str, app_id: str) -> Secret | None:
        return self.exotel_apps.get((customer_id, app_id))

    def tenant_secrets(self, customer_id: str, app_id: str | None = None) -> tuple[Secret, ...]:
        """Secrets for an app if it has its own, else for its customer."""
        if app_id is not None and f"{customer_id}/{app_id}" in self.ingress_tenants:
            return self.ingress_tenants[f"{customer_id}/{app_id}"]
        return self.ingress_tenants.get(customer_id, ())

    def recording_credentials(self, host: str) -> BasicCredentials | None:
        return self.recording_hosts.get(host.lower())

    def all_secret_values(self) -> list[str]:
        """Every secret as plain text, for tests and scrubbers that must prove none leaked."""
        values = [s.reveal() for s in self.exotel_apps.values()]
        values += [s.reveal() for group in self.ingress_tenants.values() for s in group]
        values += [c.password.reveal() for c in self.recording_hosts.values()]
        return values


def _section(raw: dict[str, Any], name: str, origin: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: {name} must be an object")
    return value


def _secret(value: Any, where: str) -> Secret:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return Secret(value)
