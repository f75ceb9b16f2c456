"""Bench: how long httpx takes to stream one recording here, whatever the server.

Why one recording cannot reach 0.9x of ``upload_file``: its sha256 goes into the object's
metadata, S3 takes metadata only when a multipart upload is created, so the upload starts after
the last byte is read and hashed, and one recording takes download + upload. This times the
download part on its own, alternating runs, for the same bytes from two servers on 127.0.0.1,
and the sha256 pass over those bytes:

- the Exotel double (``/recordings/{name}``, the archiver bench's source);
- a file server that sends a file from disk (aiohttp ``FileResponse``, sendfile): the fastest
  source here, so what is left is the client's own cost.

Each is read by httpx streaming (``iter_raw``, as the archiver reads) and by curl (a C client,
for scale). Needs the local stack for the double; 127.0.0.1 only, bounded in count.

    python -m bench.archiver.download_bound [--mib 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.processes import free_port, wait_for_http
from bench.results import median
from workers.exotel_double.control import DoubleControl

__all__ = ["download_seconds", "main"]

MiB = 1024 * 1024
FILE_SERVER = """
import sys
from aiohttp import web
path, port = sys.argv[1], int(sys.argv[2])
async def serve(request): return web.FileResponse(path)
app = web.Application(); app.router.add_get("/recording", serve)
web.run_app(app, host="127.0.0.1", port=port, print=None)
"""


def download_seconds(url: str, size: int) -> float:
    """Seconds httpx takes to stream ``url`` (``size`` bytes), reading and dropping each chunk."""
    began = time.perf_counter()
    read = 0
    with httpx.stream("GET", url, timeout=60) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            read += len(chunk)
    if read != size:
        raise SystemExit(f"{url}: read {read} bytes, expected {size}")
    return time.perf_counter() - began


def _curl_s(url: str) -> float:
    began = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", os.devnull, url], check=True)  # noqa: S603, S607
    return time.perf_counter() - began


def _sha256_s(path: Path) -> float:
    """The sha256 pass the archiver makes beside the download (it must end before the upload)."""
    began = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(MiB):
            digest.update(block)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    size = args.mib * MiB
    double_base = os.environ["EXOPIPE_EXOTEL_BASE_URL"].split("/v2/")[0]
    with tempfile.TemporaryDirectory(prefix="bench-download-") as work:
        path = Path(work) / "recording.bin"
        with path.open("wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(MiB))
        port = free_port()
        server = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-c", FILE_SERVER, str(path), str(port)]
        )
        try:
            file_url = f"http://127.0.0.1:{port}/recording"
            wait_for_http(server, file_url)
            with DoubleControl(double_base) as double:
                double.register_recording("bench-download-bound", size, seed="bench")
                double_url = double.recording_url("bench-download-bound")
            sources = {"Exotel double": double_url, "file server (sendfile)": file_url}
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.runs):
                for source, url in sources.items():
                    times.setdefault((source, "httpx"), []).append(download_seconds(url, size))
                    times.setdefault((source, "curl"), []).append(_curl_s(url))
                hashing = times.setdefault(("(none: the file's sha256)", "hashlib"), [])
                hashing.append(_sha256_s(path))
        finally:
            server.terminate()
            server.wait(10)
    print(f"runs={args.runs}, medians; one {args.mib} MiB recording; MB = 10^6 bytes")
    print("| source | client | seconds | MB/s |")
    print("|---|---|---:|---:|")
    for (source, client), seconds in times.items():
        s = median(seconds)
        print(f"| {source} | {client} | {s:.2f} | {size / s / 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
