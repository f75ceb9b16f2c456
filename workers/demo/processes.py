"""The demo's child processes: started in their own session, logged to files, always stopped.

Each child runs ``python -m workers.cli ...`` with an explicit environment, in a new session so a
Ctrl-C in the terminal reaches only the demo, which then stops the children in order (SIGTERM,
then SIGKILL after a grace period). This module must never signal a process it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Child", "ChildFailed", "Children"]


class ChildFailed(RuntimeError):
    """A child exited, or did not answer its health check in time; the message says which."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """Start ``exopipe`` sub-commands as children; :meth:`stop_all` ends every one of them."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.started: list[Child] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        log_path = self._log_dir / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                [sys.executable, "-m", "workers.cli", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.started.append(child)
        return child

    def dead(self) -> list[Child]:
        return [child for child in self.started if not child.alive()]

    def raise_if_dead(self) -> None:
        dead = self.dead()
        if dead:
            names = ", ".join(f"{c.name} (exit {c.process.returncode})" for c in dead)
            raise ChildFailed(f"a pipeline process exited: {names}")

    async def wait_healthy(self, url: str, wait_s: float) -> None:
        """Until ``url`` answers 200; :class:`ChildFailed` if a child dies or time runs out."""
        deadline = time.monotonic() + wait_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.raise_if_dead()
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise ChildFailed(f"{url} did not answer within {wait_s:.0f}s")

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every child at once, then SIGKILL whatever is still running at ``timeout``."""
        for child in self.started:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.started:
            left = max(0.1, deadline - time.monotonic())
            try:
                child.process.wait(left)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        self.started.clear()
