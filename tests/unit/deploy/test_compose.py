"""docker-compose.yml and its image, checked without Docker: services, images, commands the CLI
accepts, EXOPIPE_* names the settings object knows, ports, healthchecks and start-up order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from workers.cli import build_parser
from workers.config import Settings
from workers.demo.environment import secrets_from_store
from workers.plumbing.worker_command import WORKERS
from workers.secret_store import SecretStore

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ONE_SHOT = {"minio-init", "topics-init", "demo"}
PIPELINE = {"ingress", "settings-worker", "enricher", "archiver", "stream-archiver"}


def _env(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[name].get("environment") or {}).items()}


def _settings(name: str) -> Settings:
    return Settings.from_env({k: v for k, v in _env(name).items() if k.startswith("EXOPIPE_")})


def test_every_part_of_the_pipeline_is_a_service() -> None:
    assert set(SERVICES) == {"kafka", "minio", *ONE_SHOT, "exotel-double", *PIPELINE}
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert SERVICES["minio"]["image"].startswith("minio/minio")
    assert "mc mb" in SERVICES["minio-init"]["entrypoint"]


def test_project_services_use_the_project_image_and_commands_the_cli_accepts() -> None:
    dockerfile = ROOT / "deploy" / "docker" / "Dockerfile"
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["exopipe"]' in text
    for source in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (ROOT / source).exists(), source
    workers = set()
    for service in SERVICES.values():
        if "build" not in service:
            continue
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (ROOT / service["build"]["context"]).resolve() == ROOT
        args = build_parser().parse_args(service["command"])  # exits on an unknown command
        if args.command == "worker":
            workers.add(args.name)
    assert workers == set(WORKERS)


def test_environment_names_exist_in_the_settings_object_and_build_it() -> None:
    known = Settings.env_names()
    for name, service in SERVICES.items():
        env = _env(name) if "build" in service else {}
        unknown = {k for k in env if k.startswith("EXOPIPE_")} - known
        assert unknown == set(), name
        if env:
            _settings(name)  # every value has the right type


def test_pipeline_addresses_match_the_services_that_serve_them() -> None:
    settings = _settings("ingress")
    kafka_internal = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{settings.kafka_bootstrap}" in kafka_internal
    assert urlsplit(settings.s3_endpoint_url or "").hostname == "minio"
    assert urlsplit(settings.exotel_base_url).hostname == "exotel-double"
    assert f"{settings.ingress.port}:{settings.ingress.port}" in SERVICES["ingress"]["ports"]
    assert "--port" in SERVICES["exotel-double"]["command"]
    double_port = SERVICES["exotel-double"]["command"][-1]
    assert urlsplit(settings.exotel_base_url).port == int(double_port)
    assert settings.recording.ports == (double_port,)


def test_long_running_services_have_healthchecks_on_real_endpoints() -> None:
    settings = _settings("ingress")
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no" or name == "minio-init"
            continue
        assert "healthcheck" in service, name
        probe = " ".join(service["healthcheck"]["test"])
        if name == "ingress":
            assert f"127.0.0.1:{settings.ingress.port}/readyz" in probe
        elif name in PIPELINE:
            assert f"127.0.0.1:{settings.worker_http_port}/readyz" in probe


def test_depends_on_conditions_are_satisfiable() -> None:
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, (name, target)
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], (name, target)
            else:
                assert condition == "service_completed_successfully"
                assert target in ONE_SHOT
    for name in PIPELINE:
        assert SERVICES[name]["depends_on"]["topics-init"]["condition"] == (
            "service_completed_successfully"
        )
    assert set(SERVICES["demo"]["depends_on"]) == PIPELINE


def test_the_demo_secrets_file_serves_every_service_that_reads_it() -> None:
    env = _env("demo")
    host_path, target, _mode = SERVICES["demo"]["volumes"][0].split(":")
    assert target == env["EXOPIPE_SECRETS_FILE"]
    store = SecretStore.load(ROOT / host_path)
    demo = build_parser().parse_args(SERVICES["demo"]["command"])
    recording_host = urlsplit(demo.recording_base).hostname
    assert recording_host in _settings("archiver").recording.hosts
    customer, found = secrets_from_store(store, recording_host)
    assert customer and found.app_tokens and found.tenant_secret
    for name in ("ingress", "settings-worker", "archiver"):
        assert SERVICES[name]["volumes"][0] == SERVICES["demo"]["volumes"][0]


@pytest.mark.parametrize("name", sorted(PIPELINE))
def test_archiver_reaches_recordings_over_the_doubles_loopback(name: str) -> None:
    if name != "archiver":
        assert "network_mode" not in SERVICES[name]
        return
    assert SERVICES["archiver"]["network_mode"] == "service:exotel-double"
    assert _settings("archiver").recording.allow_insecure
