"""The ingress bench path on its own: ``python -m bench.ingress.run [--concurrency C]
[--seconds S] [--rounds N]`` (``python bench/ingress/run.py ...`` works too).

The same measurement as ``python -m bench --only ingress`` (see :mod:`bench.ingress.path`) with
the run length and round count chosen here; prints the table row and the JSON object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a file (python bench/ingress/run.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.__main__ import table  # noqa: E402
from bench.ingress.path import run_rounds  # noqa: E402
from workers import json_codec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="connections and sends")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk/baseline run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-up", type=int, default=2, help="seconds of wrk before round 1")
    args = parser.parse_args()
    result = run_rounds(
        seconds=args.seconds,
        rounds=args.rounds,
        warm_up=args.warm_up,
        concurrency=args.concurrency,
    )
    print(table([result]))
    print(json_codec.dumps(result.to_json()).decode())


if __name__ == "__main__":
    main()
