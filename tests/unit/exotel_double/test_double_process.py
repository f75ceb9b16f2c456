"""The double as a process: ``python -m``, ``exopipe double serve``, the blocking control client,
and a 50 MiB recording streamed without the server's memory growing by anything like that."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import httpx
import pytest

from tests.unit.exotel_double.helpers import (
    APP,
    CUSTOMER,
    TOKEN,
    DoubleProcess,
    bearer,
    free_port,
    start_double_process,
    stop_double_process,
)
from workers.cli import build_parser
from workers.exotel_double.control import ControlError, DoubleControl

MIB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_large_recording_streams_in_chunks_without_buffering(
    double_process: DoubleProcess,
) -> None:
    size = 50 * MIB
    pid = double_process.process.pid
    with DoubleControl(double_process.base_url) as ctl:
        baseline = peak_rss(pid)
        info = ctl.register_recording("big.mp3", size, seed="big")
        digest = hashlib.sha256()
        chunks = received = 0
        with httpx.stream("GET", ctl.recording_url("big.mp3"), timeout=60) as response:
            assert response.headers["content-length"] == str(size)
            for chunk in response.iter_raw(256 * 1024):
                chunks += 1
                received += len(chunk)
                digest.update(chunk)
        grown = peak_rss(pid) - baseline
    assert received == size
    assert digest.hexdigest() == info["sha256"]
    assert chunks >= size // (256 * 1024)
    # Registering (sha256) and serving both stream; holding the file would add >= 50 MiB.
    assert grown < 16 * MIB, f"server peak RSS grew by {grown / MIB:.1f} MiB"


def test_blocking_client_drives_a_double_process(double_process: DoubleProcess) -> None:
    with DoubleControl(double_process.base_url) as ctl:
        assert ctl.health() == {"ok": True}
        ctl.register_app(CUSTOMER, APP, TOKEN, {"popup_url": "https://p/"})
        url = f"{ctl.api_base_url}/{CUSTOMER}/apps/{APP}/settings"
        response = httpx.get(url, headers=bearer())
        assert response.json()["data"]["settings"]["popup_url"] == "https://p/"
        ctl.fail_next(1, 500)
        assert httpx.get(url, headers=bearer()).status_code == 500
        assert [e["status"] for e in ctl.requests()] == [200, 500]
        ctl.reset()
        assert ctl.requests() == []
        with pytest.raises(ControlError, match="404"):
            ctl.app_settings(CUSTOMER, APP)


def test_blocking_client_reports_an_unreachable_double() -> None:
    with DoubleControl(f"http://127.0.0.1:{free_port()}", timeout=2) as ctl:
        with pytest.raises(ControlError):
            ctl.health()


def test_exopipe_double_serve_parses() -> None:
    args = build_parser("double").parse_args(["double", "serve", "--port", "9999"])
    assert args.port == 9999
    assert args.host is None
    assert callable(args.handler)


def test_exopipe_double_serve_runs(tmp_path: Path) -> None:
    port = free_port()
    args = ["-m", "workers.cli", "double", "serve", "--host", "127.0.0.1", "--port", str(port)]
    double = start_double_process(args, port, tmp_path / "cli.log")
    try:
        with DoubleControl(double.base_url) as ctl:
            assert ctl.health() == {"ok": True}
    finally:
        stop_double_process(double)
    assert f"http://127.0.0.1:{port}/v2/integrations" in double.log.read_text()
