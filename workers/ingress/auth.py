"""Who may post webhooks: a per-tenant secret carried by the URL, and an optional sender allowlist.

Exotel cannot sign requests, so the URL configured in Exotel carries the secret, either as a
``token`` query parameter or as HTTP Basic credentials (``https://cust:SECRET@host/...``; the user
name is not checked, the password is). Secrets come from the :class:`SecretStore` only; a tenant
may have two at once so a secret can be rotated without a gap. This module must never log,
return or record a secret or the candidate a client sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable, Mapping

from workers.errors import ConfigError
from workers.secret_store import SecretStore

__all__ = ["SenderAllowlist", "authenticate", "candidate_secrets"]

# Compared against when a tenant has no secret, so an unknown tenant costs the same time.
_DUMMY = b"\x00" * 32


def candidate_secrets(query: Mapping[str, str], authorization: str | None) -> list[str]:
    """Every secret the request offers: the ``token`` parameter and a Basic password."""
    found: list[str] = []
    token = query.get("token")
    if token:
        found.append(token)
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return found
        _, sep, password = decoded.partition(":")
        if sep and password:
            found.append(password)
    return found


def authenticate(
    store: SecretStore, customer_id: str, app_id: str, candidates: Iterable[str]
) -> bool:
    """True when a candidate equals one of the tenant's secrets (app's own, else customer's).

    Every candidate is compared with every secret, without stopping at the first match, so the
    time taken does not tell which one matched or how many secrets the tenant has.
    """
    secrets = [s.reveal().encode() for s in store.tenant_secrets(customer_id, app_id)]
    ok = False
    for candidate in candidates:
        offered = candidate.encode()
        for secret in secrets or [_DUMMY]:
            ok |= hmac.compare_digest(secret, offered) and bool(secrets)
    return ok


class SenderAllowlist:
    """Sender addresses allowed by CIDR; empty means everyone (auth still applies)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        try:
            self._networks = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]
        except ValueError as exc:
            raise ConfigError(f"EXOPIPE_INGRESS_ALLOWED_CIDRS: {exc}") from None

    def allows(self, address: str | None) -> bool:
        if not self._networks:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self._networks)
