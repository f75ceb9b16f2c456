"""The access log: a line per request (path only, never the query) when INFO is on, and no
work at all per request when it is off."""

from __future__ import annotations

import logging
from unittest import mock

from workers.ingress.app import PathOnlyAccessLogger


def test_enabled_follows_the_loggers_level():
    logger = logging.getLogger("tests.access")
    access = PathOnlyAccessLogger(logger, "")
    logger.setLevel(logging.WARNING)
    assert not access.enabled
    logger.setLevel(logging.INFO)
    assert access.enabled


def test_a_line_has_the_path_and_never_the_query(caplog):
    logger = logging.getLogger("tests.access.line")
    caplog.set_level(logging.INFO, logger=logger.name)
    request = mock.Mock(remote="127.0.0.1", method="POST", path="/v1/c1/a1/popup")
    request.query_string = "token=SECRET"
    PathOnlyAccessLogger(logger, "").log(request, mock.Mock(status=200), 0.0042)
    assert caplog.messages == ["127.0.0.1 POST /v1/c1/a1/popup 200 4.2ms"]
