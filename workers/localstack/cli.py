"""``exopipe stack up | down | status``: the local stack from the shell.

``up`` prints only ``export`` lines on stdout so ``eval "$(exopipe stack up)"`` works; everything
a person should read goes to stderr. Exit codes: 0 fine, 1 a service failed, 2 a missing tool
(java, mvn), 3 ``status`` found a service down.
"""

from __future__ import annotations

import argparse
import sys

from workers.config import Settings

__all__ = ["register"]

EXIT_NOT_ALL_UP = 3


def _progress(message: str) -> None:
    print(f"exopipe stack: {message}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from workers.localstack.manager import LocalStack, StackError

    try:
        endpoints = LocalStack(settings, progress=_progress).up()
    except StackError as exc:
        print(f"exopipe: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.write(endpoints.export_lines())
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from workers.localstack.manager import LocalStack, StackError

    try:
        LocalStack(settings, progress=_progress).down(timeout=args.timeout)
    except StackError as exc:
        print(f"exopipe: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from workers.localstack.manager import LocalStack

    stack = LocalStack(settings, progress=_progress)
    services = stack.status()
    for service in services:
        print(service.line(settings.stack.host))
    print(f"home {stack.home}")
    return 0 if all(s.up for s in services) else EXIT_NOT_ALL_UP


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stack`` with its ``up``, ``down`` and ``status`` sub-commands."""
    parser = subparsers.add_parser(
        "stack",
        help="local Kafka (KRaft), S3Proxy and Exotel double, without Docker",
        description="Run the local stack as plain processes under EXOPIPE_STACK_HOME.",
    )
    actions = parser.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up", help='start what is not running; prints exports for eval "$(exopipe stack up)"'
    )
    up.set_defaults(handler=_up)
    down = actions.add_parser("down", help="stop the processes `up` started (data is kept)")
    down.add_argument(
        "--timeout", type=float, default=30.0, help="seconds after SIGTERM before SIGKILL"
    )
    down.set_defaults(handler=_down)
    status = actions.add_parser(
        "status", help="each service's pid, port and up/down; exit 3 if any is down"
    )
    status.set_defaults(handler=_status)
