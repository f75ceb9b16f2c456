"""Ingress fixtures: an in-process ingress on the real broker, and a private Kafka for faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import PipelineEnv
from workers.ingress.app import build_app
from workers.secret_store import SecretStore

SECRET = "it-secret-a"
NEXT_SECRET = "it-secret-b"
SECRETS = {"ingress_tenants": {"cust_it": [SECRET, NEXT_SECRET]}}


@pytest.fixture
def ingress_client(topics_env: PipelineEnv, tmp_path: Path) -> Callable[..., Any]:
    """``async with ingress_client(**env) as (client, settings)``: the ingress on the stack
    (on ``port`` when given: a URL the ingress answers with must name it)."""

    @asynccontextmanager
    async def make(port: int | None = None, **env: str) -> AsyncIterator[tuple[TestClient, Any]]:
        variables = {"EXOPIPE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"), **env}
        settings = topics_env.with_vars(**variables).settings
        app = build_app(settings, SecretStore.from_mapping(SECRETS))
        async with TestClient(TestServer(app, port=port)) as client:
            yield client, settings

    return make
