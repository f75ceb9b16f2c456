"""Tenant secrets from the URL (token or Basic), rotation, and the sender allowlist."""

from __future__ import annotations

import base64

import pytest

from workers.errors import ConfigError
from workers.ingress.auth import SenderAllowlist, authenticate, candidate_secrets
from workers.secret_store import SecretStore

STORE = SecretStore.from_mapping(
    {"ingress_tenants": {"c1": ["old-secret", "new-secret"], "c1/special": "app-secret"}}
)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_token_and_basic_are_candidates():
    assert candidate_secrets({"token": "t"}, basic("c1", "p")) == ["t", "p"]
    assert candidate_secrets({}, "Bearer x") == []
    assert candidate_secrets({}, "Basic !!!notbase64") == []


@pytest.mark.parametrize("secret", ["old-secret", "new-secret"])
def test_both_secrets_of_a_rotation_are_valid(secret):
    assert authenticate(STORE, "c1", "a1", [secret])


def test_wrong_secret_unknown_tenant_and_no_secret_fail():
    assert not authenticate(STORE, "c1", "a1", ["nope"])
    assert not authenticate(STORE, "c2", "a1", ["old-secret"])
    assert not authenticate(STORE, "c1", "a1", [])


def test_an_app_with_its_own_secret_does_not_take_the_customers():
    assert authenticate(STORE, "c1", "special", ["app-secret"])
    assert not authenticate(STORE, "c1", "special", ["old-secret"])


def test_basic_password_authenticates():
    offered = candidate_secrets({}, basic("anyone", "new-secret"))
    assert authenticate(STORE, "c1", "a1", offered)


def test_allowlist():
    everyone = SenderAllowlist(())
    assert everyone.allows("203.0.113.9")
    exotel = SenderAllowlist(["10.0.0.0/8", "2001:db8::/32"])
    assert exotel.allows("10.1.2.3")
    assert exotel.allows("::ffff:10.1.2.3")
    assert exotel.allows("2001:db8::1")
    assert not exotel.allows("192.168.1.1")
    assert not exotel.allows(None)
    assert not exotel.allows("garbage")
    with pytest.raises(ConfigError):
        SenderAllowlist(["10.0.0.0/33"])
