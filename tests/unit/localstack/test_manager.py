"""Pure logic of the local stack manager: config rendering, pid files, process identity, exports.

Nothing here starts Java or Maven; the real stack is exercised by the integration suite.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import sys
import uuid
from pathlib import Path

import pytest

from workers.config import Settings, StackSettings
from workers.localstack import cli as stack_cli
from workers.localstack import manager
from workers.localstack.manager import (
    DEPLOY_DIR,
    LocalStack,
    StackEndpoints,
    StackError,
    cmdline_matches,
    java_major_version,
    lib_complete,
    read_pid_file,
    render_template,
    write_pid_file,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings(home: Path) -> Settings:
    stack = StackSettings(
        home=home,
        kafka_port=_free_port(),
        controller_port=_free_port(),
        s3_port=_free_port(),
        exotel_port=_free_port(),
    )
    return Settings(stack=stack)


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_render_template_fills_placeholders() -> None:
    assert render_template("a=${x} b=${y}", {"x": 1, "y": Path("/d")}) == "a=1 b=/d"


def test_render_template_missing_value_is_an_error() -> None:
    with pytest.raises(StackError, match="data_dir"):
        render_template("log.dirs=${data_dir}", {})


def test_kafka_config_is_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    stack._render("kafka")
    props = _properties((stack.conf_dir("kafka") / "server.properties").read_text())
    s = stack.stack
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == (
        f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.controller_port}"
    )
    assert props["advertised.listeners"] == (
        f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.controller_port}"
    )
    assert props["controller.quorum.bootstrap.servers"] == f"127.0.0.1:{s.controller_port}"
    assert props["log.dirs"] == str(tmp_path / "data" / "kafka")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert (stack.conf_dir("kafka") / "log4j2.xml").is_file()


def test_kafka_can_advertise_another_port_for_clients_only(tmp_path: Path) -> None:
    """A fault proxy's port: clients go through it, the controller and the listener do not."""
    proxy_port = _free_port()
    stack = LocalStack(_settings(tmp_path), advertised_kafka_port=proxy_port)
    stack._render("kafka")
    props = _properties((stack.conf_dir("kafka") / "server.properties").read_text())
    s = stack.stack
    assert props["advertised.listeners"] == (
        f"PLAINTEXT://127.0.0.1:{proxy_port},CONTROLLER://127.0.0.1:{s.controller_port}"
    )
    assert props["listeners"].startswith(f"PLAINTEXT://127.0.0.1:{s.kafka_port},")
    assert props["controller.quorum.bootstrap.servers"] == f"127.0.0.1:{s.controller_port}"
    assert stack.endpoints().kafka_bootstrap == f"127.0.0.1:{proxy_port}"
    assert stack.port("kafka") == s.kafka_port  # readiness still checks the real listener


def test_kafka_argv_uses_the_version_lib_dir_and_a_modest_heap(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    argv = stack._render("kafka")
    assert "-Xmx1g" in argv
    assert argv[argv.index("-cp") + 1] == f"{tmp_path}/lib/kafka-{stack.stack.kafka_version}/*"
    assert argv[-2:] == ["kafka.Kafka", str(tmp_path / "conf" / "kafka" / "server.properties")]


def test_s3proxy_config_checks_signatures_and_stores_under_home(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    argv = stack._render("s3proxy")
    props = _properties((stack.conf_dir("s3proxy") / "s3proxy.properties").read_text())
    assert props["s3proxy.endpoint"] == f"http://127.0.0.1:{stack.stack.s3_port}"
    assert props["s3proxy.authorization"] == "aws-v2-or-v4"
    assert props["s3proxy.identity"] == manager.S3_IDENTITY
    assert props["s3proxy.credential"] == manager.S3_CREDENTIAL
    assert props["jclouds.provider"] == "filesystem"
    assert props["jclouds.filesystem.basedir"] == str(tmp_path / "data" / "s3")
    assert "org.gaul.s3proxy.Main" in argv


def test_exotel_argv_is_this_python_with_the_stack_port(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    argv = stack._render("exotel")
    port = str(stack.stack.exotel_port)
    assert argv == [
        sys.executable,
        "-m",
        "workers.exotel_double",
        "--host",
        "127.0.0.1",
        "--port",
        port,
    ]


def test_poms_take_versions_as_properties() -> None:
    kafka = (DEPLOY_DIR / "kafka" / "pom.xml").read_text()
    s3proxy = (DEPLOY_DIR / "s3proxy" / "pom.xml").read_text()
    assert "<version>${kafka.version}</version>" in kafka
    assert "<artifactId>kafka_2.13</artifactId>" in kafka
    assert "<artifactId>log4j-core</artifactId>" in kafka
    assert "<version>${s3proxy.version}</version>" in s3proxy


def test_pid_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "kafka.pid"
    write_pid_file(path, 4242, ["/usr/bin/java", "-cp", "x/*", "kafka.Kafka"])
    assert read_pid_file(path) == (4242, ["/usr/bin/java", "-cp", "x/*", "kafka.Kafka"])


@pytest.mark.parametrize("content", ["", "not json", '{"pid": 0, "argv": ["x"]}', '{"pid": 5}'])
def test_unusable_pid_file_reads_as_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "kafka.pid"
    path.write_text(content)
    assert read_pid_file(path) is None


def test_missing_pid_file_reads_as_none(tmp_path: Path) -> None:
    assert read_pid_file(tmp_path / "absent.pid") is None


def test_cmdline_must_match_exactly() -> None:
    raw = b"/usr/bin/java\0-cp\0/h/lib/kafka-4.4.0/*\0kafka.Kafka\0/h/server.properties\0"
    argv = ["/usr/bin/java", "-cp", "/h/lib/kafka-4.4.0/*", "kafka.Kafka", "/h/server.properties"]
    assert cmdline_matches(raw, argv)
    assert not cmdline_matches(raw, [*argv[:-1], "/other/server.properties"])
    assert not cmdline_matches(b"/usr/bin/java\0kafka.Kafka\0", argv)


def test_lib_dir_is_complete_only_with_marker_and_all_jars(tmp_path: Path) -> None:
    lib = tmp_path / "kafka-4.4.0"
    lib.mkdir()
    (lib / "a.jar").write_bytes(b"")
    assert not lib_complete(lib)
    (lib / ".complete").write_text("a.jar\nb.jar\n")
    assert not lib_complete(lib)
    (lib / "b.jar").write_bytes(b"")
    assert lib_complete(lib)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_392"', 8),
        ("garbage", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert java_major_version(output) == major


def test_endpoints_env_and_exports_round_trip_through_the_shell(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    endpoints = LocalStack(settings).endpoints()
    env = endpoints.env()
    assert env["EXOPIPE_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{settings.stack.kafka_port}"
    assert env["EXOPIPE_S3_BUCKET"] == "exotel-recordings"
    assert env["EXOPIPE_EXOTEL_BASE_URL"].endswith("/v2/integrations")
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    parsed = {}
    for line in endpoints.export_lines().splitlines():
        keyword, assignment = shlex.split(line)
        assert keyword == "export"
        name, value = assignment.split("=", 1)
        parsed[name] = value
    assert parsed == env
    # Every EXOPIPE_ name the stack exports is one the settings understand.
    assert {k for k in env if k.startswith("EXOPIPE_")} <= Settings.env_names()


def test_export_lines_quote_awkward_values() -> None:
    endpoints = StackEndpoints("h:1", "http://h:2", "b'ucket $x", "http://h:3/v2/integrations")
    line = next(x for x in endpoints.export_lines().splitlines() if "S3_BUCKET" in x)
    assert shlex.split(line) == ["export", "EXOPIPE_S3_BUCKET=b'ucket $x"]


def test_a_pid_file_naming_a_foreign_process_is_not_ours(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    # Our own (live) pid, recorded with an argv it does not have: a recycled pid, say.
    write_pid_file(stack.pid_path("kafka"), os.getpid(), ["/usr/bin/java", "kafka.Kafka"])
    assert stack.pid("kafka") is None
    stack.stop_service("kafka", signal.SIGKILL)  # must not signal us
    assert not stack.pid_path("kafka").exists()


def test_a_pid_file_naming_a_matching_live_process_is_ours(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    argv = Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    write_pid_file(stack.pid_path("s3proxy"), os.getpid(), [a.decode() for a in argv])
    assert stack.pid("s3proxy") == os.getpid()


def test_status_of_a_stack_never_started_is_all_down(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    services = stack.status()
    assert [s.name for s in services] == ["kafka", "s3proxy", "exotel"]
    assert not any(s.up for s in services)
    assert all(s.pid is None for s in services)
    assert not stack.all_running()


def test_status_names_a_port_held_by_someone_else(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = Settings(
            stack=StackSettings(home=tmp_path, s3_port=port, kafka_port=_free_port())
        )
        s3 = LocalStack(settings).status()[1]
        assert (s3.name, s3.up, s3.pid) == ("s3proxy", False, None)
        assert "did not start" in s3.detail


def test_unknown_service_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="unknown service"):
        LocalStack(_settings(tmp_path)).pid("zookeeper")


def test_missing_java_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    parser = argparse.ArgumentParser()
    stack_cli.register(parser.add_subparsers())
    args = parser.parse_args(["stack", "up"])
    assert args.handler(args, _settings(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        "exopipe: java not found: install a Java 17+ runtime "
        "(Debian: apt-get install openjdk-17-jre-headless)"
    ]


def test_status_command_exits_3_when_anything_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    stack_cli.register(parser.add_subparsers())
    args = parser.parse_args(["stack", "status"])
    assert args.handler(args, _settings(tmp_path)) == 3
    out = capsys.readouterr().out
    assert "kafka" in out and "down" in out


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kafka-storage format -t -x...`` takes such an id for an option (1 start in 64 failed)."""
    from workers.localstack import services

    first = uuid.UUID(bytes=b"\xfb" + bytes(15))  # base64 "-w...": a dash first
    then = uuid.UUID(bytes=bytes(16))
    drawn = iter([first, then])
    monkeypatch.setattr(services.uuid, "uuid4", lambda: next(drawn))
    cluster_id = services.new_cluster_id()
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22
