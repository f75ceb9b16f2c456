"""The worker's budget of multipart part buffers, shared by every upload in the process.

At most ``parts_in_flight`` parts are in memory (and on the wire) at once, whatever the number of
recordings being archived and whatever their size: an upload takes a buffer before it reads a part
from its temp file and gives it back when S3 has answered. Buffers are allocated once, lazily, and
reused, so peak memory is ``parts_in_flight`` x ``part_size`` plus the worker's own, and the
allocator never sees a stream of fresh part-sized blocks (glibc keeps those in its arenas after
a free, which is how per-part ``bytes`` made RSS grow with the number of uploads).

Part uploads run on this budget's own threads (boto3 blocks), never on the event loop and never
in the loop's default executor, which the downloads and the short S3 calls use.

:meth:`PartBudget.take` and :meth:`PartBudget.give` are called on the event loop only.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

__all__ = ["PartBody", "PartBudget"]


class PartBudget:
    """``size`` buffers of ``part_size`` bytes, and one thread per buffer to upload from it."""

    def __init__(self, size: int, part_size: int) -> None:
        if size < 1:
            raise ValueError("parts in flight must be >= 1")
        self.size = size
        self.part_size = part_size
        self._free: list[bytearray] = []
        self._allocated = 0
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="exopipe-part")
        return self._executor

    async def take(self) -> bytearray:
        """A free buffer; waits while every buffer is in flight."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        await self._slots.acquire()
        if self._free:
            return self._free.pop()
        self._allocated += 1
        return bytearray(self.part_size)

    def give(self, buffer: bytearray) -> None:
        """Return a buffer taken with :meth:`take`."""
        self._free.append(buffer)
        if self._slots is not None:
            self._slots.release()

    @property
    def allocated(self) -> int:
        """Buffers allocated so far (never more than ``size``)."""
        return self._allocated

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class PartBody(io.RawIOBase):
    """A read-only, seekable view of the first bytes of a buffer, without copying it.

    boto3 takes ``bytes``, ``bytearray`` or a file as a part body; a short (last) part is this
    view over the front of a full-size buffer, so it needs no buffer of its own.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._view)

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        end = min(len(self._view), self._position + len(target))
        count = end - self._position
        memoryview(target)[:count] = self._view[self._position : end]
        self._position = end
        return count

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._position + size
        end = min(end, len(self._view))
        chunk = self._view[self._position : end].tobytes()
        self._position = end
        return chunk

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, min(len(self._view), base[whence] + offset))
        return self._position

    def tell(self) -> int:
        return self._position
