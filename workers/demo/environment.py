"""The demo's environment: secrets file, free ports, and the EXOPIPE_* variables of its children.

The children and the demo itself get their settings from the *same* variables (this module
builds them once), so they cannot disagree about topics, ports or where the stack is. Secrets
are random per run and live only in a 0600 file in the run's temporary directory.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from workers import json_codec
from workers.demo.plan import DemoPlan
from workers.errors import ConfigError
from workers.secret_store import SecretStore

__all__ = [
    "DemoSecrets",
    "child_environment",
    "free_port",
    "new_secrets",
    "secrets_from_store",
    "write_secrets",
]


@dataclass(frozen=True)
class DemoSecrets:
    """This run's secrets; never printed (only their file path is)."""

    app_tokens: dict[str, str]
    tenant_secret: str
    recording_user: str
    recording_password: str


def new_secrets(plan: DemoPlan) -> DemoSecrets:
    return DemoSecrets(
        app_tokens={app: secrets.token_urlsafe(24) for app in plan.app_ids},
        tenant_secret=secrets.token_urlsafe(24),
        recording_user=f"demo-key-{plan.run_id}",
        recording_password=secrets.token_urlsafe(24),
    )


def secrets_from_store(store: SecretStore, recording_host: str) -> tuple[str, DemoSecrets]:
    """The customer and the secrets ``--attach`` uses, from an existing secrets file.

    The file names one customer's apps (``exotel_apps``), that customer's ingress secret and the
    recording host's credentials; anything missing is a :class:`ConfigError` naming it.
    """
    customers = sorted({customer for customer, _ in store.exotel_apps})
    if len(customers) != 1:
        raise ConfigError("demo --attach: the secrets file must hold the apps of one customer")
    customer = customers[0]
    tenant = store.tenant_secrets(customer)
    creds = store.recording_credentials(recording_host)
    if not tenant or creds is None:
        raise ConfigError(
            f"demo --attach: the secrets file needs ingress_tenants[{customer!r}] and "
            f"recording_hosts[{recording_host!r}]"
        )
    tokens = {app: t.reveal() for (c, app), t in sorted(store.exotel_apps.items())}
    found = DemoSecrets(tokens, tenant[0].reveal(), creds.username, creds.password.reveal())
    return customer, found


def write_secrets(path: Path, plan: DemoPlan, found: DemoSecrets, recording_host: str) -> None:
    """The secrets file in :mod:`workers.secret_store`'s format, readable by the owner only."""
    body = {
        "exotel_apps": {f"{plan.customer_id}/{app}": t for app, t in found.app_tokens.items()},
        "ingress_tenants": {plan.customer_id: [found.tenant_secret]},
        "recording_hosts": {
            recording_host: {
                "username": found.recording_user,
                "password": found.recording_password,
            }
        },
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(json_codec.dumps(body))


def free_port(host: str) -> int:
    """A port free right now on ``host`` (the ingress binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def child_environment(base: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """``base`` (this process's environment) with ``overrides`` laid over it."""
    return {**base, **overrides}
