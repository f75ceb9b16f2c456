"""``exopipe double serve``: run the Exotel double in the foreground.

The same ``serve`` backs ``python -m workers.exotel_double``; host and port default to the local
stack's (``EXOPIPE_STACK_HOST``, ``EXOPIPE_STACK_EXOTEL_PORT``) so the pipeline finds it there.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web

from workers.config import Settings
from workers.exotel_double import API_PREFIX
from workers.exotel_double.app import create_app

__all__ = ["register", "serve"]

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("double", help="the Exotel API double (dev, demo, tests)")
    commands = parser.add_subparsers(dest="double_command", metavar="ACTION", required=True)
    serve_parser = commands.add_parser("serve", help="serve the double until interrupted")
    serve_parser.add_argument("--host", default=None, help="default: the stack's host")
    serve_parser.add_argument("--port", type=int, default=None, help="default: the stack's port")
    serve_parser.set_defaults(handler=_serve_handler)


def _serve_handler(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.stack.host
    port = args.port if args.port is not None else settings.stack.exotel_port
    return serve(host, port)


def serve(host: str, port: int) -> int:
    """Serve until interrupted; the base URL to configure is printed once listening."""

    def announce(message: str) -> None:
        print(f"exotel double: base URL http://{host}:{port}{API_PREFIX}", flush=True)

    web.run_app(create_app(), host=host, port=port, print=announce, access_log=None)
    return 0
