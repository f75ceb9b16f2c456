"""``exopipe demo [--calls N] [--rate R] [--streams N]``: the whole pipeline on this machine,
checked end to end.

Prints a summary table on stdout (progress goes to stderr) and exits 0 only if every count
matches what was simulated; 1 on a mismatch or a failed step, 130 when interrupted.
"""

from __future__ import annotations

import argparse

from workers.config import Settings

__all__ = ["register"]


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
        return value

    return parse


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="start everything, simulate calls through the pipeline, print a summary"
    )
    parser.add_argument("--calls", type=_positive(int), default=6, help="calls to simulate (6)")
    parser.add_argument("--rate", type=_positive(float), default=5.0, help="calls per second (5)")
    parser.add_argument("--apps", type=_positive(int), default=2, help="apps to spread them on (2)")
    parser.add_argument(
        "--timeout", type=_positive(float), default=90.0, help="seconds to wait for outputs (90)"
    )
    parser.add_argument(
        "--streams",
        type=_count,
        default=1,
        help="streamed calls (live audio, 4 s each at real-time pace) to archive as WAVs (1)",
    )
    parser.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave stack services the demo had to start running afterwards",
    )

    parser.add_argument(
        "--attach",
        action="store_true",
        help="start nothing: drive an ingress, workers and double that already run (compose)",
    )
    parser.add_argument("--ingress-url", help="with --attach: the ingress as the double reaches it")
    parser.add_argument(
        "--recording-base",
        help="with --attach: the double's /recordings as the archiver reaches it",
    )

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from workers.demo.run import DemoOptions, run_demo

        options = DemoOptions(
            calls=args.calls,
            rate=args.rate,
            apps=args.apps,
            timeout=args.timeout,
            keep_stack=args.keep_stack,
            streams=args.streams,
            attach=args.attach,
            ingress_url=args.ingress_url,
            recording_base=args.recording_base,
        )
        return run_demo(settings, options)

    parser.set_defaults(handler=handler)
