"""The S3 key layout of archived recordings, a public contract analytics engines partition on.

``<prefix>/customer_id=<c>/app_id=<a>/date=<YYYY-MM-DD>/<call_sid>.<ext>``: Hive-style
partitions, the date from the event's timestamp in UTC. The key is a pure function of the event,
so a replayed or redelivered event lands on the same key (at most one object per recording).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from topics.events import parse_time

__all__ = ["AUDIO_EXTENSIONS", "extension_for", "object_key", "safe_segment", "source_url"]

AUDIO_EXTENSIONS = frozenset({"mp3", "wav", "ogg", "opus", "m4a", "aac", "flac", "webm"})
_DEFAULT_EXTENSION = "mp3"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_segment(value: str) -> str:
    """A key segment that cannot escape its partition (no ``/``, ``=``, ``..`` or odd bytes)."""
    cleaned = _UNSAFE.sub("_", value).replace("..", "__")
    return "_" + cleaned if cleaned.startswith(".") else cleaned


def extension_for(recording_url: str) -> str:
    """The URL path's audio extension (Exotel's URLs end in ``.mp3``/``.wav``), else ``mp3``."""
    path = urlsplit(recording_url).path
    _, dot, ext = path.rpartition(".")
    ext = ext.lower()
    return ext if dot and ext in AUDIO_EXTENSIONS else _DEFAULT_EXTENSION


def object_key(
    *, prefix: str, customer_id: str, app_id: str, call_sid: str, timestamp: str, url: str
) -> str:
    day = parse_time(timestamp).strftime("%Y-%m-%d")
    return (
        f"{prefix.strip('/')}/customer_id={safe_segment(customer_id)}"
        f"/app_id={safe_segment(app_id)}/date={day}"
        f"/{safe_segment(call_sid)}.{extension_for(url)}"
    )


def source_url(url: str) -> str:
    """The URL without userinfo, query or fragment: safe for logs, records and metadata."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"[:2048]
