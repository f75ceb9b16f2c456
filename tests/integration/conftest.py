"""Integration fixtures: catalog topics under a per-test prefix, on the real local stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PipelineEnv
from workers.kafka import admin_client
from workers.topic_admin import apply_catalog

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def topics_env(pipeline_env: PipelineEnv) -> PipelineEnv:
    """A :class:`PipelineEnv` whose prefixed catalog topics exist on the broker."""
    settings = pipeline_env.settings
    async with admin_client(settings) as admin:
        await apply_catalog(admin, name_prefix=settings.topic_prefix)
    return pipeline_env
