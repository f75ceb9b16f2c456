"""The archiver bench as the README's table, and a 1 GiB recording for its peak RSS.

The figures come from ``bench/archiver/path.py`` (also run by ``python -m bench --only
archiver``); this prints them as the README's markdown table, then (unless ``--no-gib``) archives
one 1 GiB recording through a fresh worker to show that peak RSS does not grow with the size.

    eval "$(exopipe stack up)"
    python -m bench.archiver.run --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.archiver.path import COUNTS, MiB, _measure, _stack, archiver_run
from bench.results import median
from workers.exotel_double.control import DoubleControl


async def one_gib() -> tuple[float, float]:
    """(MB/s, worker peak RSS MiB) of one 1 GiB recording."""
    stack = _stack()
    base = stack["EXOPIPE_EXOTEL_BASE_URL"].split("/v2/")[0]
    size = 1024 * MiB
    with DoubleControl(base) as double, tempfile.TemporaryDirectory() as tmp:
        (sample,) = await archiver_run(stack, double, Path(tmp), [(1, size)])
    return sample.mb_per_s(1, size), sample.peak_rss_mib


def main(runs: int, gib: bool) -> None:
    size = 100 * MiB
    found = asyncio.run(_measure(runs, size))
    print(f"runs={runs}, medians; 100 MiB recordings; MB = 10^6 bytes")
    print(
        "| recordings at once | archiver MB/s | archiver peak RSS MiB | upload_file MB/s "
        "| upload_file peak RSS MiB | archiver / upload_file |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for count in COUNTS:
        subject, base = found[count]
        a = median([s.mb_per_s(count, size) for s in subject])
        b = median([s.mb_per_s(count, size) for s in base])
        rss_a = median([s.peak_rss_mib for s in subject])
        rss_b = median([s.peak_rss_mib for s in base])
        print(f"| {count} | {a:.0f} | {rss_a:.0f} | {b:.0f} | {rss_b:.0f} | {a / b:.2f} |")
    if gib:
        rate, rss = asyncio.run(one_gib())
        print(f"\n1 GiB recording: {rate:.0f} MB/s, worker peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-gib", action="store_true", help="skip the 1 GiB recording")
    args = parser.parse_args()
    main(args.runs, not args.no_gib)
