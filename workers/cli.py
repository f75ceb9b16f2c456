"""``exopipe``: the one command line. Each concern registers its own sub-commands here.

A sub-command module exposes ``register(subparsers)`` which adds a parser whose ``handler`` default
is ``handler(args, settings) -> int``. This module only wires them and turns configuration
errors into one clear line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging.config
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from workers.config import Settings
from workers.errors import ConfigError
from workers.logs import logging_config

__all__ = ["main"]

# Modules that contribute sub-commands, imported lazily so that `exopipe stack up` does not
# pay for faust's import time.
_COMMAND_MODULES: dict[str, str] = {
    "stack": "workers.localstack.cli",
    "topics": "workers.topic_admin",
    "double": "workers.exotel_double.cli",
    "worker": "workers.plumbing.worker_command",
    "ingress": "workers.ingress.cli",
    "settings": "workers.settings_applier.cli",
    "demo": "workers.demo.cli",
    "dlq": "workers.dlq.cli",
}

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exopipe", description="Exotel call events through Kafka."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in _COMMAND_MODULES.items():
        if selected is not None and name != selected:
            subparsers.add_parser(name, help=f"({module_name})")
            continue
        import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = args_list[0] if args_list and args_list[0] in _COMMAND_MODULES else None
    parser = build_parser(selected)
    args = parser.parse_args(args_list)
    try:
        settings = Settings.from_env()
        logging.config.dictConfig(logging_config(settings))
        handler: Handler = args.handler
        return handler(args, settings)
    except ConfigError as exc:
        print(f"exopipe: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
