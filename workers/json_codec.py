"""The one place JSON is encoded and decoded: orjson, bytes in and bytes out.

orjson (3.12 and later) returns ``bytes`` whose allocation is not shrunk to their length: a
46-byte record holds 4 KiB (ijl/orjson#483, closed as "invalid"; home-assistant/core#181240 trims
the same way). The enricher keeps hundreds of thousands of such values in its stores and in
batches on their way to Kafka: 4 KiB each was 250 MiB of heap for one minute of traffic at 500
calls/s, and up to 2.9 GiB of RSS at 1,000 calls/s. So :func:`dumps` returns an exact-size copy
(``bytes(memoryview(...))``: one memcpy, about 0.2 us).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONDecodeError", "dumps", "dumps_pretty", "loads"]

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; datetimes as RFC 3339, dataclasses as objects; exact-size bytes."""
    return bytes(memoryview(orjson.dumps(value, option=orjson.OPT_UTC_Z)))


def dumps_pretty(value: Any) -> bytes:
    """Indented, key-sorted JSON for humans (CLI output, files kept in the repo)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
