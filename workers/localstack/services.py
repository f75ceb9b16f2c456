"""The three services: where each lives under the stack home, its config, and its command line.

Config files are rendered from the templates in ``deploy/local`` into ``home/conf`` on every
start, so a changed port or home takes effect without a reinstall. This module writes config and
formats Kafka's storage once; it must never start or signal a process.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import string
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workers.config import StackSettings
from workers.localstack.endpoints import S3_CREDENTIAL, S3_IDENTITY
from workers.localstack.errors import StackError, ToolMissingError

__all__ = [
    "DEPLOY_DIR",
    "SERVICES",
    "ServiceLayout",
    "check_name",
    "exotel_available",
    "format_kafka_storage",
    "launch_env",
    "missing_exotel",
    "new_cluster_id",
    "render_argv",
    "render_template",
]

SERVICES: tuple[str, ...] = ("kafka", "s3proxy", "exotel")

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
# deploy/local in the source tree: the Maven poms and the config templates.
DEPLOY_DIR = _SOURCE_ROOT / "deploy" / "local"

_EXOTEL_MODULE = "workers.exotel_double"
_KAFKA_HEAP = ("-Xms256m", "-Xmx1g")
_S3PROXY_HEAP = ("-Xms64m", "-Xmx512m")
_DATA_DIRS = {"kafka": "kafka", "s3proxy": "s3", "exotel": "exotel"}


def check_name(name: str) -> None:
    if name not in SERVICES:
        raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")


@dataclass(frozen=True)
class ServiceLayout:
    """Each service's directories, files and port under one stack home.

    ``advertised_kafka_port``: the port Kafka tells clients to connect to, when something else
    (a fault-injecting proxy in tests) listens there and forwards to ``stack.kafka_port``. None,
    the default, advertises the listening port itself.
    """

    home: Path
    stack: StackSettings
    advertised_kafka_port: int | None = None

    @property
    def kafka_client_port(self) -> int:
        """The port Kafka advertises: every client connection after bootstrap goes there."""
        return self.advertised_kafka_port or self.stack.kafka_port

    def version(self, name: str) -> str:
        return self.stack.kafka_version if name == "kafka" else self.stack.s3proxy_version

    def lib_dir(self, name: str) -> Path:
        return self.home / "lib" / f"{name}-{self.version(name)}"

    def data_dir(self, name: str) -> Path:
        return self.home / "data" / _DATA_DIRS[name]

    def conf_dir(self, name: str) -> Path:
        return self.home / "conf" / name

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def port(self, name: str) -> int:
        check_name(name)
        return {
            "kafka": self.stack.kafka_port,
            "s3proxy": self.stack.s3_port,
            "exotel": self.stack.exotel_port,
        }[name]


def render_template(text: str, values: dict[str, object]) -> str:
    """Fill ``${name}`` placeholders; a missing value is an error, not an empty string."""
    try:
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise StackError(f"template needs a value for {exc.args[0]}") from None


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Never one that starts with ``-`` (about 1 in 64 would): ``kafka-storage format -t -x...``
    reads it as an option, and the stack failed to start.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def exotel_available() -> bool:
    """Whether the Exotel double is installed (it is optional for the stack)."""
    try:
        return importlib.util.find_spec(f"{_EXOTEL_MODULE}.__main__") is not None
    except ModuleNotFoundError:
        return False


def missing_exotel() -> str:
    return f"not installed (no module {_EXOTEL_MODULE}.__main__)"


def _write_config(
    layout: ServiceLayout,
    deploy_dir: Path,
    name: str,
    files: tuple[str, str, str],
    values: dict[str, object],
) -> Path:
    """Render ``files``' template into home/conf, copy the logging config; return the config."""
    template, target, logging_conf = files
    conf = layout.conf_dir(name)
    props = conf / target
    props.write_text(render_template((deploy_dir / name / template).read_text(), values))
    shutil.copyfile(deploy_dir / name / logging_conf, conf / logging_conf)
    return props


def render_argv(layout: ServiceLayout, name: str, deploy_dir: Path) -> list[str]:
    """Write the service's config under home/conf and return the argv that starts it."""
    host = layout.stack.host
    layout.conf_dir(name).mkdir(parents=True, exist_ok=True)
    data = layout.data_dir(name)
    data.mkdir(parents=True, exist_ok=True)
    if name == "kafka":
        values = {
            "host": host,
            "kafka_port": layout.stack.kafka_port,
            "advertised_kafka_port": layout.kafka_client_port,
            "controller_port": layout.stack.controller_port,
            "data_dir": data,
        }
        files = ("server.properties.template", "server.properties", "log4j2.xml")
        props = _write_config(layout, deploy_dir, name, files, values)
        return [*_java_base(layout, "kafka"), "kafka.Kafka", str(props)]
    if name == "s3proxy":
        values = {
            "host": host,
            "s3_port": layout.stack.s3_port,
            "identity": S3_IDENTITY,
            "credential": S3_CREDENTIAL,
            "data_dir": data,
        }
        files = ("s3proxy.properties.template", "s3proxy.properties", "logback.xml")
        props = _write_config(layout, deploy_dir, name, files, values)
        main = ["org.gaul.s3proxy.Main", "--properties", str(props)]
        return [*_java_base(layout, "s3proxy"), *main]
    port = str(layout.stack.exotel_port)
    return [sys.executable, "-m", _EXOTEL_MODULE, "--host", host, "--port", port]


def _java_base(layout: ServiceLayout, name: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise ToolMissingError("java not found: install a Java 17+ runtime")
    conf = layout.conf_dir(name)
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
    crash = layout.home / "logs" / f"hs_err_{name}_pid%p.log"
    return [
        java,
        *opts,
        "-Djava.awt.headless=true",
        f"-XX:ErrorFile={crash}",
        "-cp",
        f"{layout.lib_dir(name)}/*",
    ]


def format_kafka_storage(
    layout: ServiceLayout, argv: list[str], progress: Callable[[str], None]
) -> None:
    """Format the KRaft log dir once (a standalone controller); later starts keep the data."""
    if (layout.data_dir("kafka") / "meta.properties").exists():
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
    progress("kafka: formatting storage (first run only)")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise StackError(f"kafka: formatting storage failed:\n{output}")


def launch_env(name: str, base: dict[str, str]) -> dict[str, str]:
    """The environment a service starts with: ``base`` plus what the double needs."""
    env = dict(base)
    if name == "exotel":
        # `python -m` must find this checkout's `workers` wherever the caller's cwd is.
        paths = [str(_SOURCE_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
    return env
