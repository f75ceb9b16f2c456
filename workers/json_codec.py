"""The one place JSON is encoded and decoded: orjson, bytes in and bytes out."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONDecodeError", "dumps", "dumps_pretty", "loads"]

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; datetimes as RFC 3339, dataclasses as objects."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def dumps_pretty(value: Any) -> bytes:
    """Indented, key-sorted JSON for humans (CLI output, files kept in the repo)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
