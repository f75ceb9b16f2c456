"""A faust worker run at WARNING keeps the root logger at WARNING.

faust's Worker, when its terminal spinner is on, sets the root logger to DEBUG at start-up (and
adds a DEBUG spinner handler): every library's debug records were then built on the hot path
and dropped by the handlers, 11% of the settings worker's CPU under load.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from typing import Any

import faust
import pytest

from workers.config import Settings
from workers.plumbing import faust_app


@pytest.fixture
def restore_logging() -> Iterator[None]:
    # faust's logging set-up also redirects stdout and stderr to a logger: put them back too.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stdout, stderr = sys.stdout, sys.stderr
    yield
    sys.stdout, sys.stderr = stdout, stderr
    root.handlers[:] = handlers
    root.setLevel(level)


def test_run_worker_at_warning_leaves_the_root_logger_at_warning(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    seen: dict[str, Any] = {}

    class StartsLoggingOnly(faust.Worker):
        def execute_from_commandline(self) -> None:  # type: ignore[override]
            self._setup_logging()  # what faust does first when the worker starts
            seen["root"] = logging.getLogger().level
            seen["debug"] = logging.getLogger("httpcore.http11").isEnabledFor(logging.DEBUG)

    async def no_topics(settings: Settings) -> int:
        return 1

    app = faust.App("test-logging", broker="kafka://127.0.0.1:1", web_enabled=False)
    module = types.SimpleNamespace(create_app=lambda settings, replication: app)
    monkeypatch.setattr(faust_app, "prepare_catalog", no_topics)
    monkeypatch.setattr(faust_app, "import_module", lambda name: module)
    monkeypatch.setattr(faust_app.faust, "Worker", StartsLoggingOnly)
    settings = Settings.from_env({"EXOPIPE_LOG_LEVEL": "WARNING"})
    assert faust_app.run_worker("settings", settings) == 0
    assert seen == {"root": logging.WARNING, "debug": False}
