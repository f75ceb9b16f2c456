"""Shared fixtures: one real local stack per test session, and factories for isolated settings.

The stack is reused when the environment already points at one (``eval "$(exopipe stack up)"``
or ``.ci/run``); otherwise the session starts its own and stops what it started. Every test that
touches Kafka gets its own uuid topic prefix, so tests never see each other's records.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from workers import topic_admin
from workers.config import Settings

_PASSED_ON = ("EXOPIPE_", "AWS_")


@dataclass(frozen=True)
class PipelineEnv:
    """The variables a test's pipeline processes run with, and the settings they produce."""

    variables: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.variables)

    def with_vars(self, **extra: str) -> PipelineEnv:
        return PipelineEnv({**self.variables, **extra})

    def process_env(self) -> dict[str, str]:
        """A full environment for a subprocess: this machine's, with ours in place of any other."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("EXOPIPE_")}
        return {**base, **self.variables}


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """``EXOPIPE_*``/``AWS_*`` variables of a running local stack (reused or started here)."""
    if os.environ.get("EXOPIPE_KAFKA_BOOTSTRAP"):
        yield {k: v for k, v in os.environ.items() if k.startswith(_PASSED_ON)}
        return
    from workers.localstack.manager import LocalStack

    stack = LocalStack(Settings.from_env())
    already_running = stack.all_running()
    endpoints = stack.up()
    variables = endpoints.env()
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update({k: v for k, v in variables.items() if k.startswith("AWS_")})
    try:
        yield variables
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            elif key.startswith("AWS_"):
                os.environ[key] = value
        if not already_running:
            stack.down()


def delete_topics_with_prefixes(bootstrap: str, prefixes: list[str]) -> None:
    """Delete every topic a test made (``topic_admin.delete_topics_with_prefixes``), in a
    thread of its own so that the test session's event loop is left alone."""

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
        await admin.start()
        try:
            await topic_admin.delete_topics_with_prefixes(admin, prefixes)
        finally:
            await admin.close()

    worker = threading.Thread(target=asyncio.run, args=(delete(),), daemon=True)
    worker.start()
    worker.join(timeout=30)


@pytest.fixture
def env_factory(stack_env: dict[str, str]) -> Iterator[Callable[..., PipelineEnv]]:
    """Make a :class:`PipelineEnv` with a fresh topic prefix; keyword args add variables.

    Every topic whose name starts with a prefix handed out here is deleted after the test.
    """
    prefixes: list[str] = []

    def make(**extra: str) -> PipelineEnv:
        prefix = f"test-{uuid.uuid4().hex[:12]}."
        prefixes.append(prefix)
        return PipelineEnv({**stack_env, "EXOPIPE_TOPIC_PREFIX": prefix, **extra})

    yield make
    if prefixes:
        delete_topics_with_prefixes(stack_env["EXOPIPE_KAFKA_BOOTSTRAP"], prefixes)


@pytest.fixture
def pipeline_env(env_factory: Callable[..., PipelineEnv]) -> PipelineEnv:
    return env_factory()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique identifiers (call sids, app ids, command ids) for one test."""
    run = uuid.uuid4().hex[:8]

    def make(stem: str) -> str:
        return f"{stem}_{run}_{uuid.uuid4().hex[:6]}"

    return make
