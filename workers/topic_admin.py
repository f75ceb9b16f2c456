"""``exopipe topics apply | list | export``: make the broker match the catalog, say how it
differs, or print it as deployment resources.

``apply`` creates what is missing and never alters an existing topic: a partition count, a
replication factor or a retention that differs is reported as drift for a person to decide on,
because changing them has consequences (key order, disk) that a tool should not choose alone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code

from topics.catalog import CATALOG, TopicSpec
from workers import json_codec
from workers.config import Settings
from workers.errors import PipelineError
from workers.kafka import admin_client

__all__ = [
    "ApplyReport",
    "Drift",
    "TopicState",
    "apply_catalog",
    "create_internal_topics",
    "delete_topics_with_prefixes",
    "describe_topics",
    "find_drift",
    "prepare_catalog",
    "register",
]

log = logging.getLogger(__name__)

_TOPIC_EXISTS = 36


@dataclass(frozen=True)
class TopicState:
    """What the broker says about one topic."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass(frozen=True)
class Drift:
    topic: str
    setting: str
    declared: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, declared {self.declared}"


@dataclass(frozen=True)
class ApplyReport:
    created: tuple[str, ...]
    unchanged: tuple[str, ...]
    drift: tuple[Drift, ...]

    @property
    def changed(self) -> bool:
        return bool(self.created)


def effective_replication(spec: TopicSpec, brokers: int, override: int | None) -> int:
    """The declared factor, or the override, capped at the number of brokers there are."""
    wanted = override if override is not None else spec.replication_factor
    return max(1, min(wanted, brokers))


def find_drift(spec: TopicSpec, state: TopicState, replication: int) -> list[Drift]:
    """Every way an existing topic differs from its declaration (pure: no broker needed)."""
    drift: list[Drift] = []
    if state.partitions != spec.partitions:
        drift.append(Drift(spec.name, "partitions", str(spec.partitions), str(state.partitions)))
    if state.replication_factor != replication:
        drift.append(
            Drift(spec.name, "replication_factor", str(replication), str(state.replication_factor))
        )
    for name, declared in spec.config().items():
        actual = state.configs.get(name)
        if actual != declared:
            drift.append(Drift(spec.name, name, declared, str(actual)))
    return drift


async def describe_topics(
    admin: AIOKafkaAdminClient, names: Sequence[str]
) -> dict[str, TopicState]:
    """The state of those of ``names`` that exist."""
    existing = set(await admin.list_topics())
    present = [name for name in names if name in existing]
    if not present:
        return {}
    metadata = {t["topic"]: t for t in await admin.describe_topics(present)}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            entries = resource["config_entries"]
            configs[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in entries
            }
    states = {}
    for name in present:
        partitions = metadata[name]["partitions"]
        replicas = len(partitions[0]["replicas"]) if partitions else 0
        states[name] = TopicState(name, len(partitions), replicas, configs.get(name, {}))
    return states


async def apply_catalog(
    admin: AIOKafkaAdminClient,
    catalog: Iterable[TopicSpec] = CATALOG,
    *,
    replication_override: int | None = None,
    name_prefix: str = "",
) -> ApplyReport:
    """Create missing topics, report drift on existing ones, alter nothing.

    ``name_prefix`` creates the same declarations under other names (``EXOPIPE_TOPIC_PREFIX``).
    """
    specs = list(catalog)
    brokers = len((await admin.describe_cluster())["brokers"])
    names = [name_prefix + spec.name for spec in specs]
    states = await describe_topics(admin, names)
    missing = [(name, spec) for name, spec in zip(names, specs, strict=True) if name not in states]
    if missing:
        new_topics = [
            NewTopic(
                name,
                spec.partitions,
                effective_replication(spec, brokers, replication_override),
                topic_configs=spec.config(),
            )
            for name, spec in missing
        ]
        response = await admin.create_topics(new_topics)
        # Created by someone else since we looked (another apply, a worker starting): not ours.
        existed = _raise_for_topic_errors(response.to_object())
        missing = [(name, spec) for name, spec in missing if name not in existed]
        await _wait_until_visible(admin, [name for name, _ in missing])
    drift: list[Drift] = []
    for name, spec in zip(names, specs, strict=True):
        if name in states:
            replication = effective_replication(spec, brokers, replication_override)
            found = find_drift(spec, states[name], replication)
            drift += [Drift(name, d.setting, d.declared, d.actual) for d in found]
    return ApplyReport(
        created=tuple(name for name, _ in missing),
        unchanged=tuple(name for name in names if name not in {n for n, _ in missing}),
        drift=tuple(drift),
    )


async def delete_topics_with_prefixes(admin: AIOKafkaAdminClient, prefixes: Sequence[str]) -> int:
    """Delete every topic whose name starts with one of ``prefixes``; how many there were.

    For the topics a test or a bench run made under its own prefix (catalog copies, faust's
    changelogs and repartitions). A broker keeps files open and metadata for every partition:
    left behind, a few runs pile up thousands of partitions, every client's metadata grows, and
    the next runs are slower (or Kafka dies of "Too many open files").
    """
    names = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
    if names:
        await admin.delete_topics(names)
    return len(names)


async def create_internal_topics(admin: AIOKafkaAdminClient, topics: Sequence[NewTopic]) -> None:
    """Create a worker's own topics (changelogs, repartitions) that are missing; alter nothing.

    They are not in the catalog: their names carry the worker's group, and no one else reads
    them. Created before the worker subscribes, with the partition count declared here, so no
    broker default ever decides it.
    """
    existing = set(await admin.list_topics())
    missing = [topic for topic in topics if topic.name not in existing]
    if missing:
        _raise_for_topic_errors((await admin.create_topics(missing)).to_object())
        await _wait_until_visible(admin, [topic.name for topic in missing])


async def prepare_catalog(settings: Settings) -> int:
    """Create missing catalog topics; return the replication factor internal topics should use.

    Every worker does this before it starts: a consumer would otherwise let the broker create a
    source topic with its default partition count.
    """
    async with admin_client(settings) as admin:
        report = await apply_catalog(
            admin,
            replication_override=settings.topic_replication_factor,
            name_prefix=settings.topic_prefix,
        )
        brokers = len((await admin.describe_cluster())["brokers"])
    for name in report.created:
        log.info("created topic %s", name)
    for drift in report.drift:
        log.warning("topic drift: %s", drift)
    return effective_replication(CATALOG[0], brokers, settings.topic_replication_factor)


def _raise_for_topic_errors(response: dict[str, Any]) -> set[str]:
    """Raise for any failure but "already exists"; return the topics that already existed."""
    errors = []
    existed = set()
    for entry in response.get("topic_errors", []):
        code = entry.get("error_code", 0)
        if code == _TOPIC_EXISTS:
            existed.add(entry.get("topic"))
        elif code != 0:
            message = entry.get("error_message") or for_code(code).__name__
            errors.append(f"{entry.get('topic')}: {message}")
    if errors:
        raise PipelineError("could not create topics: " + "; ".join(errors))
    return existed


async def _wait_until_visible(
    admin: AIOKafkaAdminClient, names: Sequence[str], *, patience_s: float = 15.0
) -> None:
    """Return once every new topic has a leader for each partition in the broker's metadata.

    KRaft answers CreateTopics before its metadata reaches the brokers: a consumer subscribing
    at once would find the topic missing, and a second apply would try to create it again.
    """
    deadline = asyncio.get_running_loop().time() + patience_s
    pending = set(names)
    while pending and asyncio.get_running_loop().time() < deadline:
        for topic in await admin.describe_topics(sorted(pending)):
            partitions = topic.get("partitions") or []
            if partitions and all(p.get("leader", -1) >= 0 for p in partitions):
                pending.discard(topic["topic"])
        if pending:
            await asyncio.sleep(0.2)


# ---- command line -------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("topics", help="create and inspect the catalog's topics")
    commands = parser.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    apply = commands.add_parser(
        "apply", help="create missing topics; report drift (exit 1) without altering anything"
    )
    apply.set_defaults(handler=_apply_command)
    listing = commands.add_parser("list", help="the catalog, and each topic's state on the broker")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list_command)
    export = commands.add_parser(
        "export", help="print the catalog as deployment resources (Strimzi KafkaTopic YAML)"
    )
    export.add_argument("--format", choices=["strimzi"], default="strimzi")
    export.add_argument(
        "--cluster", default="exopipe", help="the Strimzi Kafka cluster (strimzi.io/cluster label)"
    )
    export.add_argument(
        "--replicas", type=int, help="replication factor for every topic (default: the catalog's)"
    )
    export.set_defaults(handler=_export_command)


def _apply_command(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(_apply(settings))
    for name in report.created:
        print(f"created  {name}")
    for drift in report.drift:
        print(f"DRIFT    {drift}")
    if not report.changed and not report.drift:
        print(f"no changes: all {len(report.unchanged)} topics match the catalog")
    return 1 if report.drift else 0


async def _apply(settings: Settings) -> ApplyReport:
    async with admin_client(settings) as admin:
        return await apply_catalog(
            admin,
            replication_override=settings.topic_replication_factor,
            name_prefix=settings.topic_prefix,
        )


def _list_command(args: argparse.Namespace, settings: Settings) -> int:
    states = asyncio.run(_describe(settings))
    rows = []
    for spec in CATALOG:
        state = states.get(settings.topic(spec).name)
        rows.append(
            {
                "name": settings.topic(spec).name,
                "partitions": spec.partitions,
                "cleanup_policy": spec.cleanup_policy,
                "retention_ms": spec.retention_ms,
                "key": spec.key,
                "schema": f"topics/schemas/{spec.schema}",
                "on_broker": None
                if state is None
                else {
                    "partitions": state.partitions,
                    "replication_factor": state.replication_factor,
                },
            }
        )
    if args.json:
        sys.stdout.write(json_codec.dumps_pretty(rows).decode() + "\n")
        return 0
    print(f"{'TOPIC':34} {'PARTS':>5} {'POLICY':8} {'KEY':22} BROKER")
    for row in rows:
        broker = row["on_broker"]
        where = (
            "missing"
            if broker is None
            else (f"{broker['partitions']} partitions, rf {broker['replication_factor']}")
        )
        key = row["key"] if len(row["key"]) <= 22 else row["key"][:19] + "..."
        print(f"{row['name']:34} {row['partitions']:>5} {row['cleanup_policy']:8} {key:22} {where}")
    return 0


def _export_command(args: argparse.Namespace, settings: Settings) -> int:
    from workers.strimzi import render_yaml

    specs = [settings.topic(spec) for spec in CATALOG]
    sys.stdout.write(render_yaml(specs, cluster=args.cluster, replicas=args.replicas))
    return 0


async def _describe(settings: Settings) -> dict[str, TopicState]:
    async with admin_client(settings) as admin:
        return await describe_topics(admin, [settings.topic(spec).name for spec in CATALOG])
