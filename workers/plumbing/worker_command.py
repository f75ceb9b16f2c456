"""``exopipe worker NAME``: run one stream worker until SIGTERM or SIGINT.

Each worker is its own deployment (its own consumer group and state), so each can be scaled on
its own. The enricher runs on the batch core (its module's ``run(settings)``); the others are
faust apps (``workers.plumbing.faust_app.run_worker``).
"""

from __future__ import annotations

import argparse
from importlib import import_module

from workers.config import Settings
from workers.plumbing.faust_app import FAUST_WORKERS, run_worker

__all__ = ["BATCH_WORKERS", "WORKERS", "register", "run"]

# name -> module exposing run(settings: Settings) -> int
BATCH_WORKERS: dict[str, str] = {"enricher": "workers.enricher.app"}
WORKERS: tuple[str, ...] = tuple(sorted({*FAUST_WORKERS, *BATCH_WORKERS}))


def run(name: str, settings: Settings) -> int:
    if name in BATCH_WORKERS:
        return int(import_module(BATCH_WORKERS[name]).run(settings))
    return run_worker(name, settings)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run a stream worker until stopped")
    parser.add_argument("name", choices=WORKERS, help="which worker to run")
    parser.set_defaults(handler=lambda args, settings: run(args.name, settings))
