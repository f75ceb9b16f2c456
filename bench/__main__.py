"""``python -m bench``: every bench path, each next to its baseline from the same run, one table.

Each path lives in ``bench/<part>/path.py`` (or the module ``MODULES`` names) and exposes
``measure(quick: bool) -> list[PathResult]``; it alternates its own runs with its baseline's
and reports medians.
``--quick`` keeps the whole run under a minute with smaller loads (a smoke run, not figures to
quote); ``--json`` prints one JSON object per path instead of the table. Needs the local stack
(``eval "$(exopipe stack up)"``); talks to 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time

from bench.processes import delete_bench_topics
from bench.results import PathResult
from workers import json_codec
from workers.config import Settings

# Run in this order: the cheap paths first, end to end, then what is only reported (its load
# would slow the paths after it).
PATHS = (
    "ingress",
    "stream",
    "enricher",
    "archiver",
    "archiver_small",
    "settings_applier",
    "end_to_end",
    "stream_500",
)
# Where a path lives, when not in bench/<path>/path.py.
MODULES = {"archiver_small": "bench.archiver.small", "stream_500": "bench.stream.past_target"}
# Programs a path runs, and how to install each (Debian/Ubuntu): without one, the path is
# reported skipped and the others still run.
NEEDS = {"ingress": "wrk"}
INSTALL = {"wrk": "sudo apt-get install wrk"}


def _missing_tools(parts: list[str]) -> dict[str, str]:
    """Tools the chosen paths need and this machine lacks; the install command said once each."""
    missing = {}
    for tool in sorted({NEEDS[p] for p in parts if p in NEEDS}):
        if shutil.which(tool) is None:
            missing[tool] = f"{tool} is not installed ({INSTALL[tool]})"
            print(
                f"bench: {tool} is not on PATH, so the paths that need it are skipped; "
                f"install it with: {INSTALL[tool]}",
                file=sys.stderr,
            )
    return missing


def _measure(part: str, quick: bool) -> list[PathResult]:
    """One path, on a broker holding no other bench run's topics; its own are removed after.

    Each run makes about 21 topics (catalog copies, changelogs, baselines) under its prefix;
    left behind they piled up on the local broker (325 after a day of runs here), each with
    its partitions' files and metadata.
    """
    settings = Settings.from_env()
    delete_bench_topics(settings)
    module = importlib.import_module(MODULES.get(part, f"bench.{part}.path"))
    try:
        return module.measure(quick=quick)
    finally:
        delete_bench_topics(settings)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:,.{digits}f}"


def _met(result: PathResult) -> str:
    if result.reported is not None:
        return f"reported: {result.reported}"
    return "yes" if result.met else "**no**"


def table(results: list[PathResult]) -> str:
    rows = [
        "| path | rate | baseline | baseline rate | ratio | p50 ms | p99 ms "
        "| baseline p99 ms | delivered | target | met |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        if r.skipped:
            rows.append(f"| {r.path} | skipped: {r.skipped} | | | | | | | | | - |")
            continue
        rows.append(
            f"| {r.path} | {_fmt(r.rate)} {r.unit} | {r.baseline} | {_fmt(r.baseline_rate)} "
            f"| {r.ratio:.2f} | {_fmt(r.p50_ms)} | {_fmt(r.p99_ms)} | {_fmt(r.baseline_p99_ms)} "
            f"| {r.delivered}/{r.sent} | {r.target} | {_met(r)} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller loads, under 60 s in all")
    parser.add_argument("--json", action="store_true", help="one JSON object per path")
    parser.add_argument("--only", nargs="+", choices=PATHS, help="run these paths only")
    args = parser.parse_args(argv)
    results: list[PathResult] = []
    started = time.monotonic()
    parts = list(args.only or PATHS)
    missing = _missing_tools(parts)
    for part in parts:
        began = time.monotonic()
        tool = NEEDS.get(part)
        if tool in missing:
            found = [PathResult.not_run(part, missing[tool])]
        else:
            found = _measure(part, args.quick)
        print(f"bench: {part} done in {time.monotonic() - began:.0f} s", file=sys.stderr)
        for result in found:
            if args.json:
                sys.stdout.write(json_codec.dumps(result.to_json()).decode() + "\n")
                sys.stdout.flush()
        results.extend(found)
    if not args.json:
        print(table(results))
    print(f"bench: all done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    counted = [r for r in results if r.reported is None]  # a reported row never fails the run
    return 0 if all(r.met or r.skipped for r in counted) or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
