"""Log set-up for every exopipe process: plain text by default, JSON lines with
``EXOPIPE_LOG_FORMAT=json`` (one orjson object per line, for log shippers).

A JSON line carries ``ts``, ``level``, ``logger``, ``msg``, the correlation fields a call site
passes with ``extra=`` (``call_sid``, ``command_id``, ``event_id``, ``customer_id``, ``app_id``,
``topic``, ``partition``, ``offset``) and ``exc`` for an exception. Messages are formatted by the
call sites, which never put a secret in them; this module adds nothing from the environment or
the secrets file.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from workers import json_codec
from workers.config import Settings
from workers.errors import ConfigError

__all__ = ["CORRELATION_FIELDS", "JsonFormatter", "logging_config"]

CORRELATION_FIELDS = (
    "call_sid",
    "command_id",
    "event_id",
    "customer_id",
    "app_id",
    "topic",
    "partition",
    "offset",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CORRELATION_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json_codec.dumps(line).decode()


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``settings`` (also handed to faust's Worker)."""
    if settings.log_format not in {"text", "json"}:
        raise ConfigError(f"EXOPIPE_LOG_FORMAT={settings.log_format!r}: use text or json")
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if settings.log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["default"]},
    }
