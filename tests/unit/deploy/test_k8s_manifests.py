"""deploy/k8s/base: every manifest parses, passes the Kubernetes schema, and agrees with the code
(settings names, ports, probe paths, worker names, mounts, the topic catalog)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from topics.catalog import CATALOG
from workers.config import Settings
from workers.ingress.app import build_app
from workers.plumbing.ops_http import OpsHttp
from workers.plumbing.worker_command import WORKERS
from workers.secret_store import SecretStore
from workers.strimzi import render_yaml, resource_name

BASE = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "base"
K8S_VERSION = "1.33.0"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]


def _all() -> list[dict[str, Any]]:
    kustomization = _docs("kustomization.yaml")[0]
    return [doc for name in kustomization["resources"] for doc in _docs(name)]


def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _all() if d["kind"] == kind}


def _config() -> dict[str, str]:
    return _kind("ConfigMap")["exopipe-settings"]["data"]


def _pods() -> dict[str, dict[str, Any]]:
    workloads = {**_kind("Deployment"), **_kind("StatefulSet")}
    return {name: w["spec"]["template"]["spec"] for name, w in workloads.items()}


def test_kustomization_lists_every_manifest_in_the_directory() -> None:
    listed = set(_docs("kustomization.yaml")[0]["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_every_workload_has_a_probe_resources_and_a_disruption_budget() -> None:
    assert set(_kind("Deployment")) == {f"exopipe-{name}" for name in WORKERS}
    assert set(_kind("StatefulSet")) == {"exopipe-ingress"}
    budgets = {
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for pdb in _kind("PodDisruptionBudget").values()
    }
    assert budgets == set(_pods())
    for name, pod in _pods().items():
        (container,) = pod["containers"]
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name


def test_settings_configmap_holds_only_known_names_and_builds_settings() -> None:
    data = _config()
    assert set(data) <= Settings.env_names()
    settings = Settings.from_env(data)  # every value has the right type
    assert settings.worker_http_port > 0


def test_worker_args_ports_and_probe_paths_match_the_code() -> None:
    settings = Settings.from_env(_config())
    worker_routes = {r.resource.canonical for r in OpsHttp(None, "h", 1).web_app().router.routes()}
    for name in WORKERS:
        (container,) = _pods()[f"exopipe-{name}"]["containers"]
        assert container["args"] == ["worker", name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["ops"] == settings.worker_http_port
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["path"] in worker_routes
            assert container[probe]["httpGet"]["port"] == "ops"


def test_ingress_port_probes_spool_and_autoscaler_match_the_code() -> None:
    settings = Settings.from_env(_config())
    app = build_app(settings, SecretStore(), producer_factory=lambda: None)  # type: ignore[arg-type,return-value]
    routes = {r.resource.canonical for r in app.router.routes()}
    ingress = _kind("StatefulSet")["exopipe-ingress"]
    (container,) = ingress["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["ingress"]
    assert {p["containerPort"] for p in container["ports"]} == {settings.ingress.port}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(mounts["spool"]) == settings.ingress.spool_dir
    (claim,) = ingress["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "spool"
    hpa = _kind("HorizontalPodAutoscaler")["exopipe-ingress"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "exopipe-ingress",
    }


def test_secrets_file_and_archivers_disk_are_mounted_where_settings_say() -> None:
    settings = Settings.from_env(_config())
    secret = _kind("Secret")["exopipe-secrets"]
    SecretStore.from_mapping(yaml.safe_load(secret["stringData"]["secrets.json"]))
    for name, pod in _pods().items():
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["secrets"]["secret"]["secretName"] == "exopipe-secrets"
        assert settings.secrets_file == Path(mounts["secrets"]) / "secrets.json", name
    for name, pod in _pods().items():
        (container,) = pod["containers"]
        if container["args"][0] != "worker":
            continue
        # The root filesystem is read-only: the stores and faust's bookkeeping need a mount.
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(settings.worker_data_dir) in mounts, name
    (archiver,) = _pods()["exopipe-archiver"]["containers"]
    mounts = {m["mountPath"] for m in archiver["volumeMounts"]}
    assert str(settings.recording.temp_dir) in mounts
    (streams,) = _pods()["exopipe-stream-archiver"]["containers"]
    mounts = {m["mountPath"] for m in streams["volumeMounts"]}
    assert str(settings.stream_archiver.spill_dir) in mounts


def test_kafka_topics_are_exactly_the_generated_export_of_the_catalog() -> None:
    assert (BASE / "kafka-topics.yaml").read_text() == render_yaml(CATALOG)
    topics = {d["spec"]["topicName"]: d for d in _docs("kafka-topics.yaml")}
    assert set(topics) == {spec.name for spec in CATALOG}
    for spec in CATALOG:
        doc = topics[spec.name]
        assert doc["metadata"]["name"] == resource_name(spec.name)
        assert doc["spec"]["partitions"] == spec.partitions
        assert doc["spec"]["replicas"] == spec.replication_factor
        assert doc["spec"]["config"] == spec.config()


def test_manifests_pass_the_kubernetes_schema_strictly() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = 0
    for doc in _all():
        if doc["kind"] == "KafkaTopic":  # a Strimzi CRD: not in the core schemas
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 10
    broken = copy.deepcopy(_kind("Deployment")["exopipe-archiver"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
