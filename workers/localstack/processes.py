"""Detached service processes: spawn, pid files, identity checks, liveness, waiting for exit.

We record each service's pid *and* command line, and only ever treat a pid as ours while its
command line still matches what we started, so a recycled pid or a user's own Kafka is never
signalled. This module must never signal a process whose identity it has not checked; the
callers (the manager) do the signalling after :func:`pid_cmdline_matches`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "cmdline_matches",
    "pid_alive",
    "pid_cmdline_matches",
    "port_open",
    "proc_state",
    "read_pid_file",
    "spawn",
    "tail",
    "wait_exit",
    "write_pid_file",
]

_LOG_TAIL_LINES = 40


def write_pid_file(path: Path, pid: int, argv: Sequence[str]) -> None:
    """Record what we started: the pid and the exact argv that identifies it later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"pid": pid, "argv": list(argv), "started": time.time()}))
    os.replace(tmp, path)


def read_pid_file(path: Path) -> tuple[int, list[str]] | None:
    """The pid and argv we recorded, or None when there is no (usable) pid file."""
    try:
        data = json.loads(path.read_text())
        pid = int(data["pid"])
        argv = [str(a) for a in data["argv"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid <= 0 or not argv:
        return None
    return pid, argv


def cmdline_matches(raw_cmdline: bytes, argv: Sequence[str]) -> bool:
    """Whether a ``/proc/<pid>/cmdline`` is exactly the argv we started (NUL-separated)."""
    parts = raw_cmdline.rstrip(b"\0").split(b"\0")
    return [p.decode(errors="replace") for p in parts] == list(argv)


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a log, for start failures; empty when there is no log."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _reap(pid: int) -> None:
    """Collect an exited child of ours, so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def proc_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` (R, S, T, Z, ...), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else None


def pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_state(pid) not in {"Z", "X"}


def pid_cmdline_matches(pid: int, argv: Sequence[str]) -> bool:
    """Whether pid is still the process we started; without /proc fall back to ``ps``."""
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.parent.exists():
        try:
            return cmdline_matches(proc.read_bytes(), argv)
        except OSError:
            return False
    ps = shutil.which("ps")
    if ps is None:
        return False
    result = subprocess.run(  # noqa: S603 - fixed tool, our own pid
        [ps, "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() == " ".join(argv)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn(argv: Sequence[str], log_path: Path, env: dict[str, str]) -> int:
    """Start a detached process (own session, stdin closed, output to its log); return its pid.

    posix_spawn rather than subprocess.Popen: the service outlives this call, and a Popen object
    dropped while its child runs raises ResourceWarning, which the test suite turns into errors.
    The previous log is kept as ``<name>.log.1``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.exists() and log_path.stat().st_size > 0:
        os.replace(log_path, log_path.with_suffix(log_path.suffix + ".1"))
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, out, 2),
        ]
        return os.posix_spawn(argv[0], list(argv), env, file_actions=actions, setsid=True)
    finally:
        os.close(out)
        os.close(devnull)


def wait_exit(pid: int, timeout: float) -> bool:
    """Whether ``pid`` exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)
