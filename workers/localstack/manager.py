"""The local stack without Docker: Kafka (KRaft), S3Proxy and the Exotel API double as processes.

Kafka and S3Proxy are resolved from Maven into ``StackSettings.home`` once, so every later start
is offline and takes seconds. Each service is a detached process whose pid *and* command line we
record; we only ever signal a pid whose command line still matches what we started, so a recycled
pid or a user's own Kafka is never touched. Everything here is synchronous and usable from tests
(which SIGKILL/SIGSTOP Kafka and start it again on the same data) as well as from the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from workers.config import Settings, StackSettings

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

SERVICES: tuple[str, ...] = ("kafka", "s3proxy", "exotel")

# Local development credentials of the loopback S3Proxy. They guard nothing of value and are
# printed in the `export` lines on purpose, so that boto3 finds them where it looks on AWS.
S3_IDENTITY = "exopipe-local"
S3_CREDENTIAL = "exopipe-local-secret"  # noqa: S105 - a fixed local-dev credential, not a secret
S3_REGION = "us-east-1"

# deploy/local in the source tree: the Maven poms and the config templates.
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"

_EXOTEL_MODULE = "workers.exotel_double"
_LIB_MARKER = ".complete"
_KAFKA_HEAP = ("-Xms256m", "-Xmx1g")
_S3PROXY_HEAP = ("-Xms64m", "-Xmx512m")
_READY_TIMEOUT = {"kafka": 120.0, "s3proxy": 60.0, "exotel": 30.0}
_STOP_TIMEOUT = 30.0
_LOG_TAIL_LINES = 40

_T = TypeVar("_T")


class StackError(Exception):
    """A stack operation failed; ``exit_code`` is what ``exopipe stack`` exits with."""

    exit_code = 1


class ToolMissingError(StackError):
    """``java`` or ``mvn`` is not installed; the message says what to install."""

    exit_code = 2


@dataclass(frozen=True)
class StackEndpoints:
    """Where the running stack answers, in the form the pipeline's settings and boto3 read."""

    kafka_bootstrap: str
    s3_endpoint_url: str
    s3_bucket: str
    exotel_base_url: str
    aws_access_key_id: str = S3_IDENTITY
    aws_secret_access_key: str = S3_CREDENTIAL
    aws_default_region: str = S3_REGION

    def env(self) -> dict[str, str]:
        """The variables a pipeline process needs to use this stack instead of production."""
        return {
            "EXOPIPE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "EXOPIPE_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "EXOPIPE_S3_BUCKET": self.s3_bucket,
            "EXOPIPE_EXOTEL_BASE_URL": self.exotel_base_url,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_DEFAULT_REGION": self.aws_default_region,
        }

    def export_lines(self) -> str:
        """``export NAME=value`` lines, quoted for ``eval "$(exopipe stack up)"``."""
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env().items())


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


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit tested)
# ---------------------------------------------------------------------------------------------


def render_template(text: str, values: dict[str, object]) -> str:
    """Fill ``${name}`` placeholders; a missing value is an error, not an empty string."""
    try:
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise StackError(f"template needs a value for {exc.args[0]}") from None


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


def lib_complete(lib_dir: Path) -> bool:
    """A lib dir is usable when its marker lists jars that are all still there."""
    marker = lib_dir / _LIB_MARKER
    try:
        names = [n for n in marker.read_text().splitlines() if n.strip()]
    except OSError:
        return False
    return bool(names) and all((lib_dir / n).is_file() for n in names)


def java_major_version(version_output: str) -> int | None:
    """The major version from ``java -version`` output (``1.8.0_x`` is 8, ``17.0.2`` is 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


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


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def _reap(pid: int) -> None:
    """Collect an exited child of ours, so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _proc_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` (R, S, T, Z, ...), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else None


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) not in {"Z", "X"}


def _pid_cmdline_matches(pid: int, argv: Sequence[str]) -> bool:
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


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _spawn(argv: Sequence[str], log_path: Path, env: dict[str, str]) -> int:
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


def _run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion even when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="localstack-probe")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence client loggers while probing a service that is still starting."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ---------------------------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------------------------


class LocalStack:
    """Start, stop and inspect the local stack under ``settings.stack.home``."""

    def __init__(
        self,
        settings: Settings,
        *,
        progress: Callable[[str], None] | None = None,
        deploy_dir: Path = DEPLOY_DIR,
    ) -> None:
        self.settings = settings
        self.stack: StackSettings = settings.stack
        self.home = Path(self.stack.home).expanduser()
        self.deploy_dir = deploy_dir
        self._progress = progress or (lambda msg: log.info("%s", msg))

    # -- paths -----------------------------------------------------------------------------

    def lib_dir(self, name: str) -> Path:
        version = self.stack.kafka_version if name == "kafka" else self.stack.s3proxy_version
        return self.home / "lib" / f"{name}-{version}"

    def data_dir(self, name: str) -> Path:
        return self.home / "data" / {"kafka": "kafka", "s3proxy": "s3", "exotel": "exotel"}[name]

    def conf_dir(self, name: str) -> Path:
        return self.home / "conf" / name

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def port(self, name: str) -> int:
        self._check_name(name)
        return {
            "kafka": self.stack.kafka_port,
            "s3proxy": self.stack.s3_port,
            "exotel": self.stack.exotel_port,
        }[name]

    # -- public API ------------------------------------------------------------------------

    def endpoints(self) -> StackEndpoints:
        """The endpoints this stack serves (whether or not it is running)."""
        host = self.stack.host
        return StackEndpoints(
            kafka_bootstrap=f"{host}:{self.stack.kafka_port}",
            s3_endpoint_url=f"http://{host}:{self.stack.s3_port}",
            s3_bucket=self.settings.s3_bucket,
            exotel_base_url=f"http://{host}:{self.stack.exotel_port}/v2/integrations",
        )

    def up(self) -> StackEndpoints:
        """Start whatever is not running, wait until every service answers, make the bucket."""
        with self._lock():
            services = [s for s in SERVICES if self._available(s)]
            if "exotel" not in services:
                self._progress(f"exotel: skipped, {self._missing_exotel()}")
            to_start = [s for s in services if not self._healthy_running(s)]
            for name in services:
                if name not in to_start:
                    self._progress(f"{name}: already running (pid {self.pid(name)})")
            if any(s in to_start for s in ("kafka", "s3proxy")):
                self._require_java()
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
                result.append(ServiceStatus(name, None, port, False, self._missing_exotel()))
                continue
            if pid is None:
                busy = _port_open(self.stack.host, port)
                detail = "port in use by a process we did not start" if busy else "not running"
                result.append(ServiceStatus(name, None, port, False, detail))
                continue
            if _proc_state(pid) == "T":
                result.append(ServiceStatus(name, pid, port, False, "stopped (SIGSTOP)"))
                continue
            answers = _port_open(self.stack.host, port)
            detail = "" if answers else "process alive, port not answering"
            result.append(ServiceStatus(name, pid, port, answers, detail))
        return result

    def all_running(self) -> bool:
        """Whether every available service is ours, alive and answering on its port."""
        return all(s.up for s in self.status() if self._available(s.name))

    def pid(self, name: str) -> int | None:
        """The pid of the service we started, if it is still that process and alive."""
        self._check_name(name)
        record = read_pid_file(self.pid_path(name))
        if record is None:
            return None
        pid, argv = record
        if _pid_alive(pid) and _pid_cmdline_matches(pid, argv):
            return pid
        return None

    def start_service(self, name: str) -> None:
        """Start one service (installing it if needed) and wait until it answers."""
        self._check_name(name)
        with self._lock():
            if self._healthy_running(name):
                return
            if not self._available(name):
                raise StackError(self._missing_exotel())
            if name != "exotel":
                self._require_java()
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
        if _proc_state(pid) == "T":
            os.kill(pid, signal.SIGCONT)  # a frozen process only acts on SIGTERM once resumed
        if not self._wait_exit(pid, timeout if sig != signal.SIGKILL else 10.0):
            self._progress(f"{name}: pid {pid} did not exit in {timeout:.0f}s; SIGKILL")
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        self.pid_path(name).unlink(missing_ok=True)

    def resume_service(self, name: str) -> None:
        """SIGCONT a service frozen with ``stop_service(name, signal.SIGSTOP)``."""
        self.stop_service(name, signal.SIGCONT)

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        """Block until the service answers its health probe (after a restart, say)."""
        self._wait_ready(name, timeout)

    # -- internals -------------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if name not in SERVICES:
            raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")

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
        if name != "exotel":
            return True
        try:
            return importlib.util.find_spec(f"{_EXOTEL_MODULE}.__main__") is not None
        except ModuleNotFoundError:
            return False

    def _missing_exotel(self) -> str:
        return f"not installed (no module {_EXOTEL_MODULE}.__main__)"

    def _healthy_running(self, name: str) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        if _proc_state(pid) == "T" or not _port_open(self.stack.host, self.port(name)):
            return False
        return True

    def _require_java(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise ToolMissingError(
                "java not found: install a Java 17+ runtime "
                "(Debian: apt-get install openjdk-17-jre-headless)"
            )
        result = subprocess.run(  # noqa: S603 - the java on PATH, fixed arguments
            [java, "-version"], capture_output=True, text=True, check=False
        )
        major = java_major_version(result.stderr + result.stdout)
        if major is not None and major < 17:
            raise ToolMissingError(
                f"java {major} found at {java}: Kafka 4 needs Java 17+ "
                "(Debian: apt-get install openjdk-17-jre-headless)"
            )

    def _install(self, name: str) -> None:
        """Resolve the service's jars into its lib dir once; skipped when the marker is there."""
        if name == "exotel":
            return
        lib = self.lib_dir(name)
        if lib_complete(lib):
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ToolMissingError(
                "mvn not found: install Apache Maven to fetch Kafka and S3Proxy "
                "(Debian: apt-get install maven)"
            )
        pom = self.deploy_dir / name / "pom.xml"
        if not pom.is_file():
            raise StackError(f"{pom} not found: run exopipe from a source checkout")
        version_prop = "kafka.version" if name == "kafka" else "s3proxy.version"
        version = self.stack.kafka_version if name == "kafka" else self.stack.s3proxy_version
        tmp = lib.with_name(f"{lib.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-D{version_prop}={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        self._progress(f"{name}: fetching {name} {version} jars with Maven (first run only)")
        started = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        jars = sorted(p.name for p in tmp.glob("*.jar"))
        if result.returncode != 0 or not jars:
            shutil.rmtree(tmp, ignore_errors=True)
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
            raise StackError(f"{name}: mvn failed (exit {result.returncode}):\n{output}")
        (tmp / _LIB_MARKER).write_text("\n".join(jars) + "\n")
        shutil.rmtree(lib, ignore_errors=True)
        os.replace(tmp, lib)
        self._progress(f"{name}: {len(jars)} jars in {time.monotonic() - started:.1f}s")

    def _render(self, name: str) -> list[str]:
        """Write the service's config under home/conf and return the argv that starts it."""
        host = self.stack.host
        conf = self.conf_dir(name)
        conf.mkdir(parents=True, exist_ok=True)
        data = self.data_dir(name)
        data.mkdir(parents=True, exist_ok=True)
        if name == "kafka":
            props = conf / "server.properties"
            template = (self.deploy_dir / "kafka" / "server.properties.template").read_text()
            props.write_text(
                render_template(
                    template,
                    {
                        "host": host,
                        "kafka_port": self.stack.kafka_port,
                        "controller_port": self.stack.controller_port,
                        "data_dir": data,
                    },
                )
            )
            shutil.copyfile(self.deploy_dir / "kafka" / "log4j2.xml", conf / "log4j2.xml")
            return [*self._java_base("kafka"), "kafka.Kafka", str(props)]
        if name == "s3proxy":
            props = conf / "s3proxy.properties"
            template = (self.deploy_dir / "s3proxy" / "s3proxy.properties.template").read_text()
            props.write_text(
                render_template(
                    template,
                    {
                        "host": host,
                        "s3_port": self.stack.s3_port,
                        "identity": S3_IDENTITY,
                        "credential": S3_CREDENTIAL,
                        "data_dir": data,
                    },
                )
            )
            shutil.copyfile(self.deploy_dir / "s3proxy" / "logback.xml", conf / "logback.xml")
            main = ["org.gaul.s3proxy.Main", "--properties", str(props)]
            return [*self._java_base("s3proxy"), *main]
        return [
            sys.executable,
            "-m",
            _EXOTEL_MODULE,
            "--host",
            host,
            "--port",
            str(self.stack.exotel_port),
        ]

    def _java_base(self, name: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ToolMissingError("java not found: install a Java 17+ runtime")
        conf = self.conf_dir(name)
        if name == "kafka":
            opts = [
                *_KAFKA_HEAP,
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                f"-Dlog4j2.configurationFile={conf / 'log4j2.xml'}",
            ]
        else:
            opts = [*_S3PROXY_HEAP, f"-Dlogback.configurationFile={conf / 'logback.xml'}"]
        # A JVM crash report goes next to the service log, not into the caller's directory.
        crash = self.home / "logs" / f"hs_err_{name}_pid%p.log"
        return [
            java,
            *opts,
            "-Djava.awt.headless=true",
            f"-XX:ErrorFile={crash}",
            "-cp",
            f"{self.lib_dir(name)}/*",
        ]

    def _format_kafka_storage(self, argv: list[str]) -> None:
        """Format the KRaft log dir once (a standalone controller); later starts keep the data."""
        data = self.data_dir("kafka")
        if (data / "meta.properties").exists():
            return
        props = argv[-1]
        java_opts = argv[: argv.index("kafka.Kafka")]
        cmd = [
            *java_opts,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_cluster_id(),
            "-c",
            props,
            "--standalone",
        ]
        self._progress("kafka: formatting storage (first run only)")
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise StackError(f"kafka: formatting storage failed:\n{output}")

    def _launch(self, name: str) -> None:
        port = self.port(name)
        if self.pid(name) is None and _port_open(self.stack.host, port):
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
            self._format_kafka_storage(argv)
        env = dict(os.environ)
        if name == "exotel":
            # `python -m` must find this checkout's `workers` wherever the caller's cwd is.
            source_root = str(Path(__file__).resolve().parents[2])
            paths = [source_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
            env["PYTHONUNBUFFERED"] = "1"
        pid = _spawn(argv, self.log_path(name), env)
        write_pid_file(self.pid_path(name), pid, argv)
        self._progress(f"{name}: started pid {pid} on {self.stack.host}:{port}")

    def _wait_ready(self, name: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or _READY_TIMEOUT[name])
        record = read_pid_file(self.pid_path(name))
        pid = record[0] if record else None
        probe = {
            "kafka": self._kafka_ready,
            "s3proxy": self._s3_ready,
            "exotel": self._exotel_ready,
        }
        last_error = "no answer"
        while time.monotonic() < deadline:
            if pid is None or not _pid_alive(pid):
                self._fail(name, f"exited during start-up ({last_error})")
            if _port_open(self.stack.host, self.port(name)):
                try:
                    probe[name]()
                    return
                except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        self._fail(name, f"not ready after {timeout or _READY_TIMEOUT[name]:.0f}s ({last_error})")

    def _fail(self, name: str, why: str) -> None:
        log_tail = tail(self.log_path(name))
        raise StackError(
            f"{name}: {why}; log {self.log_path(name)}:\n{log_tail}"
            if log_tail
            else f"{name}: {why}; log {self.log_path(name)} is empty"
        )

    def _kafka_ready(self) -> None:
        """Kafka answers a metadata request and has registered itself as a broker."""
        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> int:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.endpoints().kafka_bootstrap, request_timeout_ms=5000
            )
            try:
                await asyncio.wait_for(admin.start(), 10)
                cluster = await asyncio.wait_for(admin.describe_cluster(), 10)
            finally:
                await admin.close()
            return len(cluster.get("brokers", []))

        with _quiet("aiokafka"):
            brokers = _run_async(probe)
        if brokers < 1:
            raise StackError("no broker registered yet")

    def _s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        endpoints = self.endpoints()
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoints.s3_endpoint_url,
            region_name=endpoints.aws_default_region,
            aws_access_key_id=endpoints.aws_access_key_id,
            aws_secret_access_key=endpoints.aws_secret_access_key,
            config=Config(
                connect_timeout=2, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"}
            ),
        )

    def _s3_ready(self) -> None:
        client = self._s3_client()
        try:
            client.list_buckets()
        finally:
            client.close()

    def _ensure_bucket(self) -> None:
        """Create ``Settings.s3_bucket`` if S3Proxy is up and it does not exist yet."""
        if self.pid("s3proxy") is None:
            return
        bucket = self.settings.s3_bucket
        client = self._s3_client()
        try:
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket not in names:
                client.create_bucket(Bucket=bucket)
                self._progress(f"s3proxy: created bucket {bucket}")
        finally:
            client.close()

    def _exotel_ready(self) -> None:
        import httpx

        url = f"http://{self.stack.host}:{self.stack.exotel_port}/healthz"
        with _quiet("httpx"):
            response = httpx.get(url, timeout=2.0)
        if response.status_code != 200:
            raise StackError(f"GET /healthz answered {response.status_code}")

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return not _pid_alive(pid)
