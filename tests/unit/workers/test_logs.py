"""Log set-up: JSON lines with correlation fields, or the plain text format."""

from __future__ import annotations

import io
import logging
import logging.config
import sys

import orjson
import pytest

from workers.config import Settings
from workers.errors import ConfigError
from workers.logs import JsonFormatter, logging_config


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "workers.archiver", logging.WARNING, __file__, 1, "x %s", ("y",), None
    )
    record.__dict__.update(extra)
    return record


def test_json_line_carries_correlation_fields_and_nothing_else() -> None:
    line = orjson.loads(JsonFormatter().format(_record(call_sid="c1", partition=3, other="z")))
    assert line["msg"] == "x y" and line["level"] == "WARNING"
    assert line["logger"] == "workers.archiver"
    assert line["call_sid"] == "c1" and line["partition"] == 3
    assert "other" not in line and line["ts"].endswith("+00:00")


def test_json_line_holds_the_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record()
        record.exc_info = sys.exc_info()
    line = orjson.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in line["exc"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_config_routes_every_logger_through_one_formatter(fmt: str) -> None:
    config = logging_config(
        Settings.from_env({"EXOPIPE_LOG_FORMAT": fmt, "EXOPIPE_LOG_LEVEL": "debug"})
    )
    assert config["root"]["level"] == "DEBUG"
    stream = io.StringIO()
    config["handlers"]["default"]["stream"] = stream
    saved = logging.root.handlers[:], logging.root.level
    try:
        logging.config.dictConfig(config)
        logging.getLogger("faust.worker").info("ready", extra={"command_id": "k1"})
    finally:
        logging.root.handlers[:] = saved[0]
        logging.root.setLevel(saved[1])
    text = stream.getvalue().strip()
    if fmt == "json":
        assert orjson.loads(text)["command_id"] == "k1"
    else:
        assert text.endswith("INFO faust.worker ready")


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="EXOPIPE_LOG_FORMAT"):
        logging_config(Settings.from_env({"EXOPIPE_LOG_FORMAT": "xml"}))
