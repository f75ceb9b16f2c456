"""``exopipe demo`` as a user runs it: a subprocess, its exit status and its printed summary.

The streamed call needs a double with the streaming client: the stack's double must have been
started from this code (a double started earlier answers 404 and the demo says so).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import PipelineEnv
from workers.s3 import new_s3_client

_ROW = re.compile(
    r"^\s{2}(?P<what>[a-z][\w ()]+?)\s+(?P<expected>\d+)\s+(?P<seen>\d+)\s+(ok|MISMATCH)$"
)


def _rows(stdout: str) -> dict[str, tuple[int, int]]:
    found = {}
    for line in stdout.splitlines():
        match = _ROW.match(line)
        if match:
            found[match["what"]] = (int(match["expected"]), int(match["seen"]))
    return found


@pytest.mark.slow
def test_demo_runs_every_call_through_the_pipeline(pipeline_env: PipelineEnv) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "workers.cli", "demo", "--calls", "6", "--rate", "10"],
        env=pipeline_env.process_env(),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    rows = _rows(done.stdout)
    assert rows == {
        "settings applied": (2, 2),
        "webhooks answered 2xx": (16, 16),
        "webhooks accepted (on Kafka)": (16, 16),
        "missed calls enriched": (2, 2),
        "recordings archived (sha256 ok)": (2, 2),
        "webhooks rejected": (0, 0),
        "recordings failed": (0, 0),
        "streams sent whole (double)": (1, 1),
        "streams archived (duration ok)": (1, 1),
    }
    assert "result: all counts match" in done.stdout
    uris = re.findall(r"s3://\S+", done.stdout)
    recordings = [uri for uri in uris if not uri.endswith(".wav")]
    assert len(recordings) == 2
    s3 = new_s3_client(pipeline_env.settings)
    for uri in recordings:
        head = _head(s3, uri)
        assert head["ContentLength"] == 48 * 1024
    # The streamed call: 4 s of 8 kHz 16-bit audio, one WAV (its 44-byte header + 64,000 bytes).
    assert "streams archived 1/1:" in done.stdout
    [wav] = [uri for uri in uris if uri.endswith(".wav")]
    assert re.search(r"^\s+stream-\S+\s+4\.00 s\s+8000 Hz\s+64044 B\s+s3://", done.stdout, re.M)
    assert "/streams/customer_id=demo-" in wav
    assert _head(s3, wav)["ContentLength"] == 64_044
    # The run's secrets lived in a temp file that is gone, and never reached the output.
    assert "secrets.json" not in done.stdout
    assert not re.search(r"token|password", done.stdout, re.IGNORECASE)


def _head(s3: Any, uri: str) -> dict[str, Any]:
    parts = urlsplit(uri)
    return s3.head_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent pid is the second field after the parenthesised command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_sigterm_stops_every_process_the_demo_started(pipeline_env: PipelineEnv) -> None:
    demo = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "workers.cli", "demo", "--calls", "500", "--rate", "2"],
        env=pipeline_env.process_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stderr is not None
        for line in demo.stderr:
            if "settings applied" in line:
                break
        children = _children_of(demo.pid)
        assert len(children) == 5  # the ingress and four workers
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=40) == 130
        time.sleep(0.2)
        assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
    finally:
        if demo.poll() is None:
            demo.kill()
        demo.communicate()


@pytest.mark.slow
def test_attach_drives_a_pipeline_that_already_runs(
    pipeline_env: PipelineEnv, tmp_path: Path
) -> None:
    """What docker compose's demo service does: ingress and workers started by someone else."""
    from workers.demo.environment import free_port
    from workers.demo.processes import Children

    settings = pipeline_env.settings
    host = settings.stack.host
    secrets = tmp_path / "secrets.json"
    secrets.write_text(
        '{"exotel_apps": {"acme/sales": "t-sales", "acme/support": "t-support"},'
        ' "ingress_tenants": {"acme": "tenant-secret"},'
        f' "recording_hosts": {{"{host}": {{"username": "u", "password": "p"}}}}}}'
    )
    port = free_port(host)
    env = pipeline_env.with_vars(
        EXOPIPE_SECRETS_FILE=str(secrets),
        EXOPIPE_INGRESS_PORT=str(port),
        EXOPIPE_INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
        EXOPIPE_RECORDING_ALLOW_INSECURE="1",
        EXOPIPE_RECORDING_HOSTS=host,
        EXOPIPE_RECORDING_PORTS=str(settings.stack.exotel_port),
        EXOPIPE_STREAM_ARCHIVER_SPILL_DIR=str(tmp_path / "stream-spill"),
    ).process_env()
    children = Children(tmp_path)
    try:
        children.start("ingress", ["ingress"], env)
        for name in ("settings", "archiver", "enricher", "stream-archiver"):
            children.start(name, ["worker", name], env)
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "workers.cli", "demo", "--attach", "--calls", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert done.returncode == 0, done.stdout + done.stderr[-4000:]
        rows = _rows(done.stdout)
        assert rows["settings applied"] == (2, 2)
        assert rows["webhooks accepted (on Kafka)"] == (8, 8)
        assert rows["recordings archived (sha256 ok)"] == (1, 1)
        assert rows["streams archived (duration ok)"] == (1, 1)
        assert "customer acme" in done.stdout
        assert all(child.alive() for child in children.started)  # attach stops nothing
    finally:
        children.stop_all()
