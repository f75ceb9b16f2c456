"""``python -m workers.exotel_double [--host H] [--port P]``: serve the double without the CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workers.config import StackSettings
from workers.exotel_double.cli import serve

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    defaults = StackSettings()
    parser = argparse.ArgumentParser(prog="python -m workers.exotel_double")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.exotel_port)
    args = parser.parse_args(argv)
    return serve(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
