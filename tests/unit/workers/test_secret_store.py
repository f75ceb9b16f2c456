from __future__ import annotations

import pytest

from workers import json_codec
from workers.errors import ConfigError
from workers.secret_store import Secret, SecretStore

RAW = {
    "exotel_apps": {"cust_1/app_1": "tok-app-1"},
    "ingress_tenants": {"cust_1": ["old-secret", "new-secret"], "cust_1/app_9": "app9-secret"},
    "recording_hosts": {"Recordings.Exotel.com": {"username": "key", "password": "pw-123"}},
}


def test_secrets_never_print() -> None:
    store = SecretStore.from_mapping(RAW)
    token = store.app_token("cust_1", "app_1")
    assert token is not None and token.reveal() == "tok-app-1"
    for text in (repr(token), str(token), repr(store), f"{store}"):
        assert "tok-app-1" not in text and "pw-123" not in text and "old-secret" not in text


def test_two_secrets_per_tenant_for_rotation_and_app_overrides() -> None:
    store = SecretStore.from_mapping(RAW)
    assert [s.matches("old-secret") for s in store.tenant_secrets("cust_1")] == [True, False]
    assert any(s.matches("new-secret") for s in store.tenant_secrets("cust_1", "app_2"))
    assert [s.reveal() for s in store.tenant_secrets("cust_1", "app_9")] == ["app9-secret"]
    assert store.tenant_secrets("cust_2") == ()


def test_recording_hosts_are_case_insensitive() -> None:
    store = SecretStore.from_mapping(RAW)
    creds = store.recording_credentials("recordings.exotel.COM")
    assert creds is not None and creds.username == "key"
    assert store.recording_credentials("other.example") is None


@pytest.mark.parametrize(
    "raw, message",
    [
        ([], "top level"),
        ({"exotel_app": {}}, "unknown sections"),
        ({"exotel_apps": {"no-slash": "t"}}, "customer/app"),
        ({"exotel_apps": {"c/a": ""}}, "non-empty"),
        ({"ingress_tenants": {"c": ["a", "b", "c"]}}, "list of two"),
        ({"recording_hosts": {"h": {"password": "x"}}}, "username"),
    ],
)
def test_malformed_secrets_are_refused_without_echoing_values(raw, message) -> None:
    with pytest.raises(ConfigError, match=message):
        SecretStore.from_mapping(raw)


def test_load_from_file_and_missing_file(tmp_path) -> None:
    path = tmp_path / "secrets.json"
    path.write_bytes(json_codec.dumps(RAW))
    assert SecretStore.load(path).app_token("cust_1", "app_1") == Secret("tok-app-1")
    with pytest.raises(ConfigError, match="does not exist"):
        SecretStore.load(tmp_path / "nope.json")
    assert SecretStore.load(None).app_token("cust_1", "app_1") is None


def test_all_secret_values_lists_each_once_per_place() -> None:
    values = SecretStore.from_mapping(RAW).all_secret_values()
    assert sorted(values) == sorted(
        ["tok-app-1", "old-secret", "new-secret", "app9-secret", "pw-123"]
    )
