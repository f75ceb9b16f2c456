from __future__ import annotations

from pathlib import Path

import pytest

from workers.config import DEFAULT_EXOTEL_BASE_URL, Settings
from workers.errors import ConfigError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.exotel_base_url == DEFAULT_EXOTEL_BASE_URL
    assert settings.secrets_file is None


def test_variables_are_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "EXOPIPE_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
            "EXOPIPE_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "EXOPIPE_S3_BUCKET": "calls",
            "EXOPIPE_SECRETS_FILE": "/etc/exopipe/secrets.json",
            "EXOPIPE_TOPIC_REPLICATION_FACTOR": "3",
            "EXOPIPE_STACK_KAFKA_PORT": "19092",
            "PATH": "/usr/bin",
        }
    )
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3_bucket == "calls"
    assert settings.secrets_file == Path("/etc/exopipe/secrets.json")
    assert settings.topic_replication_factor == 3
    assert settings.stack.kafka_port == 19092


def test_a_misspelt_variable_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ConfigError, match="EXOPIPE_KAFKA_BOOTSTRAPS"):
        Settings.from_env({"EXOPIPE_KAFKA_BOOTSTRAPS": "x:1"})


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EXOPIPE_STACK_S3_PORT"):
        Settings.from_env({"EXOPIPE_STACK_S3_PORT": "nine thousand"})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.kafka_bootstrap = "elsewhere:9092"  # type: ignore[misc]


def test_env_names_lists_every_variable() -> None:
    names = Settings.env_names()
    for required in (
        "EXOPIPE_KAFKA_BOOTSTRAP",
        "EXOPIPE_S3_ENDPOINT_URL",
        "EXOPIPE_S3_BUCKET",
        "EXOPIPE_EXOTEL_BASE_URL",
        "EXOPIPE_SECRETS_FILE",
    ):
        assert required in names
