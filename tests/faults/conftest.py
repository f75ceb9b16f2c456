"""The fault suite: real processes on loopback, faults injected into them, invariants checked
with unique ids (every acknowledged input has its effect; duplicates counted apart).

Every test here is slow and needs the real stack. Faults that kill or pause Kafka or S3 run
against instances of the test's own (other ports, another home), never the shared stack.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import topics_env  # noqa: F401 - a fixture for this suite

# The settings worker's fixtures (an in-process double per test: faults touch no one else).
from tests.integration.settings_applier.conftest import (  # noqa: F401 - fixtures
    apps,
    ctl,
    double,
    settings_env,
    start_worker,
)

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
