"""The local stack without Docker: Kafka (KRaft), S3Proxy and the Exotel API double as processes.

Kafka and S3Proxy are resolved from Maven into ``StackSettings.home`` once (``install``), so
every later start is offline and takes seconds. Each service is a detached process whose pid
*and* command line we record (``processes``); we only ever signal a pid whose command line still
matches what we started, so a recycled pid or a user's own Kafka is never touched. Config and
command lines come from ``services``, health probes from ``readiness``. Everything here is
synchronous and usable from tests (which SIGKILL/SIGSTOP Kafka and start it again on the same
data) as well as from the CLI. This module is the one public face: import from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from workers.config import Settings, StackSettings
from workers.localstack import readiness
from workers.localstack.endpoints import S3_CREDENTIAL, S3_IDENTITY, S3_REGION, StackEndpoints
from workers.localstack.errors import StackError, ToolMissingError
from workers.localstack.install import (
    install_jars,
    java_major_version,
    lib_complete,
    require_java,
)
from workers.localstack.processes import (
    cmdline_matches,
    pid_alive,
    pid_cmdline_matches,
    port_open,
    proc_state,
    read_pid_file,
    spawn,
    tail,
    wait_exit,
    write_pid_file,
)
from workers.localstack.services import (
    DEPLOY_DIR,
    SERVICES,
    ServiceLayout,
    check_name,
    exotel_available,
    format_kafka_storage,
    launch_env,
    missing_exotel,
    render_argv,
    render_template,
)

__all__ = [
    "DEPLOY_DIR",
    "S3_CREDENTIAL",
    "S3_IDENTITY",
    "S3_REGION",
    "SERVICES",
    "LocalStack",
    "ServiceStatus",
    "StackEndpoints",
    "StackError",
    "ToolMissingError",
    "cmdline_matches",
    "java_major_version",
    "lib_complete",
    "read_pid_file",
    "render_template",
    "write_pid_file",
]

log = logging.getLogger(__name__)

_STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``status`` sees it: ``up`` only if our pid is alive and its port answers."""

    name: str
    pid: int | None
    port: int
    up: bool
    detail: str

    def line(self, host: str) -> str:
        pid = str(self.pid) if self.pid else "-"
        state = "up" if self.up else "down"
        return f"{self.name:<8} {state:<5} pid {pid:<8} {host}:{self.port:<6} {self.detail}"


class LocalStack:
    """Start, stop and inspect the local stack under ``settings.stack.home``.

    ``advertised_kafka_port`` (tests only): Kafka tells clients to connect to this port instead
    of the one it listens on, so that every client connection goes through whatever listens
    there (a fault-injecting proxy that forwards to ``settings.stack.kafka_port``). The KRaft
    controller's listener is not affected. None, the default, changes nothing.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        progress: Callable[[str], None] | None = None,
        deploy_dir: Path = DEPLOY_DIR,
        advertised_kafka_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.stack: StackSettings = settings.stack
        self.home = Path(self.stack.home).expanduser()
        self.deploy_dir = deploy_dir
        self.layout = ServiceLayout(self.home, self.stack, advertised_kafka_port)
        self._progress = progress or (lambda msg: log.info("%s", msg))

    # -- paths -----------------------------------------------------------------------------

    def lib_dir(self, name: str) -> Path:
        return self.layout.lib_dir(name)

    def data_dir(self, name: str) -> Path:
        return self.layout.data_dir(name)

    def conf_dir(self, name: str) -> Path:
        return self.layout.conf_dir(name)

    def log_path(self, name: str) -> Path:
        return self.layout.log_path(name)

    def pid_path(self, name: str) -> Path:
        return self.layout.pid_path(name)

    def port(self, name: str) -> int:
        return self.layout.port(name)

    # -- public API ------------------------------------------------------------------------

    def endpoints(self) -> StackEndpoints:
        """The endpoints this stack serves (whether or not it is running).

        Kafka's bootstrap is the port it advertises, so that bootstrap connections take the same
        path as every later one.
        """
        host = self.stack.host
        return StackEndpoints(
            kafka_bootstrap=f"{host}:{self.layout.kafka_client_port}",
            s3_endpoint_url=f"http://{host}:{self.stack.s3_port}",
            s3_bucket=self.settings.s3_bucket,
            exotel_base_url=f"http://{host}:{self.stack.exotel_port}/v2/integrations",
        )

    def up(self) -> StackEndpoints:
        """Start whatever is not running, wait until every service answers, make the bucket."""
        with self._lock():
            services = [s for s in SERVICES if self._available(s)]
            if "exotel" not in services:
                self._progress(f"exotel: skipped, {missing_exotel()}")
            to_start = [s for s in services if not self._healthy_running(s)]
            for name in services:
                if name not in to_start:
                    self._progress(f"{name}: already running (pid {self.pid(name)})")
            if any(s in to_start for s in ("kafka", "s3proxy")):
                require_java()
            for name in to_start:
                self._install(name)
            started = time.monotonic()
            for name in to_start:
                self._launch(name)
            for name in to_start:
                self._wait_ready(name)
            if to_start:
                self._progress(f"ready in {time.monotonic() - started:.1f}s")
            self._ensure_bucket()
            return self.endpoints()

    def down(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop every service we started (SIGTERM, then SIGKILL after ``timeout``)."""
        with self._lock():
            for name in reversed(SERVICES):
                self.stop_service(name, timeout=timeout)

    def status(self) -> list[ServiceStatus]:
        """Each service: our pid if alive, and up only if its port also answers."""
        result = []
        for name in SERVICES:
            port = self.port(name)
            pid = self.pid(name)
            if name == "exotel" and not self._available(name):
                result.append(ServiceStatus(name, None, port, False, missing_exotel()))
                continue
            if pid is None:
                busy = port_open(self.stack.host, port)
                detail = "port in use by a process we did not start" if busy else "not running"
                result.append(ServiceStatus(name, None, port, False, detail))
                continue
            if proc_state(pid) == "T":
                result.append(ServiceStatus(name, pid, port, False, "stopped (SIGSTOP)"))
                continue
            answers = port_open(self.stack.host, port)
            detail = "" if answers else "process alive, port not answering"
            result.append(ServiceStatus(name, pid, port, answers, detail))
        return result

    def all_running(self) -> bool:
        """Whether every available service is ours, alive and answering on its port."""
        return all(s.up for s in self.status() if self._available(s.name))

    def pid(self, name: str) -> int | None:
        """The pid of the service we started, if it is still that process and alive."""
        check_name(name)
        record = read_pid_file(self.pid_path(name))
        if record is None:
            return None
        pid, argv = record
        if pid_alive(pid) and pid_cmdline_matches(pid, argv):
            return pid
        return None

    def start_service(self, name: str) -> None:
        """Start one service (installing it if needed) and wait until it answers."""
        check_name(name)
        with self._lock():
            if self._healthy_running(name):
                return
            if not self._available(name):
                raise StackError(missing_exotel())
            if name != "exotel":
                require_java()
            self._install(name)
            self._launch(name)
            self._wait_ready(name)
            if name == "s3proxy":
                self._ensure_bucket()

    def stop_service(
        self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = _STOP_TIMEOUT
    ) -> None:
        """Send ``sig`` to the service we started.

        SIGTERM/SIGINT wait up to ``timeout`` then SIGKILL; SIGKILL waits for the death. Both
        remove the pid file (the data stays). Other signals (SIGSTOP, SIGCONT) are only delivered,
        so a fault test can freeze Kafka and :meth:`resume_service` it.
        """
        pid = self.pid(name)
        if pid is None:
            self.pid_path(name).unlink(missing_ok=True)
            return
        if sig not in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            os.kill(pid, sig)
            return
        self._progress(f"{name}: stopping pid {pid} ({sig.name})")
        os.kill(pid, sig)
        if proc_state(pid) == "T":
            os.kill(pid, signal.SIGCONT)  # a frozen process only acts on SIGTERM once resumed
        if not wait_exit(pid, timeout if sig != signal.SIGKILL else 10.0):
            self._progress(f"{name}: pid {pid} did not exit in {timeout:.0f}s; SIGKILL")
            os.kill(pid, signal.SIGKILL)
            wait_exit(pid, 10.0)
        self.pid_path(name).unlink(missing_ok=True)

    def resume_service(self, name: str) -> None:
        """SIGCONT a service frozen with ``stop_service(name, signal.SIGSTOP)``."""
        self.stop_service(name, signal.SIGCONT)

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        """Block until the service answers its health probe (after a restart, say)."""
        self._wait_ready(name, timeout)

    # -- internals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One stack operation at a time per home (parallel test workers call ``up`` too)."""
        run = self.home / "run"
        run.mkdir(parents=True, exist_ok=True)
        with (run / "stack.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _available(self, name: str) -> bool:
        return name != "exotel" or exotel_available()

    def _healthy_running(self, name: str) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        return proc_state(pid) != "T" and port_open(self.stack.host, self.port(name))

    def _install(self, name: str) -> None:
        """Resolve the service's jars into its lib dir once; the double needs none."""
        if name == "exotel":
            return
        pom = self.deploy_dir / name / "pom.xml"
        version = self.layout.version(name)
        install_jars(name, self.lib_dir(name), pom, version, self._progress)

    def _render(self, name: str) -> list[str]:
        """Write the service's config under home/conf and return the argv that starts it."""
        return render_argv(self.layout, name, self.deploy_dir)

    def _launch(self, name: str) -> None:
        port = self.port(name)
        if self.pid(name) is None and port_open(self.stack.host, port):
            raise StackError(
                f"{name}: port {self.stack.host}:{port} is already in use by a process that "
                "exopipe stack did not start; stop it or change EXOPIPE_STACK_* ports"
            )
        stale = self.pid(name)
        if stale is not None:  # ours, alive, but not answering (hung or frozen): restart it
            self._progress(f"{name}: pid {stale} is not answering; restarting it")
            self.stop_service(name, signal.SIGKILL)
        argv = self._render(name)
        if name == "kafka":
            format_kafka_storage(self.layout, argv, self._progress)
        pid = spawn(argv, self.log_path(name), launch_env(name, dict(os.environ)))
        write_pid_file(self.pid_path(name), pid, argv)
        self._progress(f"{name}: started pid {pid} on {self.stack.host}:{port}")

    def _wait_ready(self, name: str, timeout: float | None = None) -> None:
        record = read_pid_file(self.pid_path(name))
        endpoints = self.endpoints()
        probes: dict[str, Callable[[], None]] = {
            "kafka": lambda: readiness.kafka_ready(endpoints),
            "s3proxy": lambda: readiness.s3_ready(endpoints),
            "exotel": lambda: readiness.exotel_ready(self.stack.host, self.stack.exotel_port),
        }
        why = readiness.wait_until_ready(
            record[0] if record else None,
            self.stack.host,
            self.port(name),
            probes[name],
            timeout or readiness.READY_TIMEOUT[name],
        )
        if why is not None:
            self._fail(name, why)

    def _fail(self, name: str, why: str) -> NoReturn:
        log_tail = tail(self.log_path(name))
        raise StackError(
            f"{name}: {why}; log {self.log_path(name)}:\n{log_tail}"
            if log_tail
            else f"{name}: {why}; log {self.log_path(name)} is empty"
        )

    def _ensure_bucket(self) -> None:
        """Create ``Settings.s3_bucket`` if S3Proxy is up and it does not exist yet."""
        if self.pid("s3proxy") is None:
            return
        if readiness.ensure_bucket(self.endpoints()):
            self._progress(f"s3proxy: created bucket {self.settings.s3_bucket}")
