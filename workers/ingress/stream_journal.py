"""Open streams on local disk, so an ingress restarted after a kill closes them at once.

One small file per connection, written once its stream_sid is known (before its first record
goes out) the way the spool writes a record (temporary name, fsync, rename, directory fsync),
and removed once its ``closed`` record is delivered. A restart finds the files a killed process
left and writes each stream's ``closed`` (see :mod:`stream_restart`): the stream archiver then
archives the stream at once instead of after its quiet period. The journal lives in the spool's
directory, under the spool's lock (one process). Blocking file work runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from workers import json_codec
from workers.ingress.spool import write_durably

__all__ = ["OpenStream", "StreamJournal"]

log = logging.getLogger(__name__)
_SUFFIX = ".open"


@dataclass(frozen=True)
class OpenStream:
    """What a ``closed`` record needs when the process that read the stream is gone."""

    connection_id: str
    stream_sid: str
    customer_id: str
    app_id: str
    started_at: str


class StreamJournal:
    """A directory of one file per open stream; :meth:`left_open` at start-up, before serving."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def left_open(self) -> list[OpenStream]:
        """The streams a previous process left open; an unreadable file is moved aside."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*.tmp"):
            stale.unlink()  # never renamed: its stream had sent no record yet
        found = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                found.append(_read(path))
            except (ValueError, TypeError, OSError) as exc:
                log.error("open-stream file %s is unreadable, moved aside: %s", path.name, exc)
                path.rename(path.with_suffix(".corrupt"))
        return found

    async def record(self, stream: OpenStream) -> None:
        """Durable once this returns (a few hundred bytes, fsynced in a thread)."""
        blob = json_codec.dumps(asdict(stream))
        await asyncio.to_thread(self._write, self._path(stream.connection_id), blob)

    async def remove(self, connection_id: str) -> None:
        await asyncio.to_thread(_unlink, self._path(connection_id))

    def _write(self, path: Path, blob: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_durably(path, blob)

    def _path(self, connection_id: str) -> Path:
        return self.directory / f"{connection_id}{_SUFFIX}"


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read(path: Path) -> OpenStream:
    body = json_codec.loads(path.read_bytes())
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    stream = OpenStream(**body)  # TypeError when a field is missing or unknown
    if not all(isinstance(value, str) and value for value in asdict(stream).values()):
        raise ValueError("a field is not a non-empty string")
    if stream.connection_id != path.name.removesuffix(_SUFFIX):
        raise ValueError("connection_id does not match the file's name")
    return stream
