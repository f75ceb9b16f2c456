"""``exopipe settings set | get``: change an app's settings through Kafka, or read them from Exotel.

``set`` produces one command (a CloudEvent on ``exotel.settings.command``, key
``customer_id/app_id``, a fresh ``command_id``) after checking it with the worker's own
validation. With ``--wait`` it prints the command's result and exits 0 only for ``applied`` (or
``dry_run`` with ``--dry-run``): the result topic's end offsets are taken *before* the command is
produced, so the result cannot be missed however fast the worker is.

``get`` calls the App Settings GET through :class:`~workers.exotel_client.ExotelClient` with the
token from the secrets file and prints the settings, their URLs' credentials redacted as in the
records. Neither command ever prints a token or a URL's credential.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT
from topics.events import InvalidEvent, make_event, parse_event
from workers import json_codec
from workers.config import Settings
from workers.errors import PipelineError
from workers.exotel_client import ExotelClient
from workers.kafka import all_partitions, new_reader, produce_event, started_producer
from workers.settings_applier.commands import validate_data
from workers.settings_applier.records import public_settings
from workers.url_credentials import redact_text

__all__ = ["build_command", "register"]

_URL_OPTIONS = ("popup_url", "missed_call_url", "callback_url", "recording_url", "streaming_url")
_BOOL_OPTIONS = ("recording_enabled", "streaming_enabled")
_SUCCESS = {"applied", "dry_run"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("settings", help="change or read an app's Exotel settings")
    actions = parser.add_subparsers(dest="settings_command", metavar="ACTION", required=True)

    put = actions.add_parser("set", help="produce a settings command (optionally wait for it)")
    _identify(put)
    for name in _URL_OPTIONS:
        put.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="URL")
    for name in _BOOL_OPTIONS:
        put.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=_boolean, metavar="true|false"
        )
    put.add_argument("--requested-by", help="who asks (kept in the result, for audit)")
    put.add_argument("--command-id", help="default: a new random id")
    put.add_argument("--dry-run", action="store_true", help="validate and preview, no PUT")
    put.add_argument("--wait", action="store_true", help="print the result; exit 1 unless applied")
    put.add_argument("--timeout", type=float, default=60.0, help="seconds --wait waits (60)")
    put.set_defaults(handler=_set_handler)

    get = actions.add_parser("get", help="GET the app's settings from Exotel and print them")
    _identify(get)
    get.set_defaults(handler=_get_handler)


def _identify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customer", required=True, help="Exotel customer id")
    parser.add_argument("--app", required=True, help="Exotel app id")


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "on", "1"}:
        return True
    if lowered in {"false", "no", "off", "0"}:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def build_command(args: argparse.Namespace) -> dict[str, Any]:
    """The command's ``data`` from the parsed options (only the settings that were given)."""
    changes = {
        name: getattr(args, name)
        for name in (*_URL_OPTIONS, *_BOOL_OPTIONS)
        if getattr(args, name) is not None
    }
    data: dict[str, Any] = {
        "command_id": args.command_id or f"cli-{uuid.uuid4()}",
        "customer_id": args.customer,
        "app_id": args.app,
        "settings": changes,
    }
    if args.requested_by:
        data["requested_by"] = args.requested_by
    if args.dry_run:
        data["dry_run"] = True
    return data


def _set_handler(args: argparse.Namespace, settings: Settings) -> int:
    data = build_command(args)
    problems = validate_data(data)
    if problems:
        for problem in problems:
            # A problem may quote the refused value, credentials and all.
            print(f"exopipe settings set: {redact_text(problem)}", file=sys.stderr)
        return 2
    return asyncio.run(_set(settings, data, wait=args.wait, wait_s=args.timeout))


async def _set(settings: Settings, data: dict[str, Any], *, wait: bool, wait_s: float) -> int:
    command = settings.topic(SETTINGS_COMMAND)
    event = make_event(
        SETTINGS_COMMAND,
        data,
        source="exopipe/cli",
        customer_id=data["customer_id"],
        app_id=data["app_id"],
    )
    key = f"{data['customer_id']}/{data['app_id']}"
    consumer = await _result_reader(settings) if wait else None
    try:
        async with started_producer(settings) as producer:
            await produce_event(producer, command, event, key)
        print(json_codec.dumps({"command_id": data["command_id"], "sent": True}).decode())
        if consumer is None:
            return 0
        result = await _await_result(consumer, data["command_id"], wait_s)
    finally:
        if consumer is not None:
            await consumer.stop()
    if result is None:
        print(f"exopipe settings set: no result within {wait_s:.0f}s", file=sys.stderr)
        return 1
    print(json_codec.dumps_pretty(result).decode())
    return 0 if result.get("outcome") in _SUCCESS else 1


async def _result_reader(settings: Settings) -> AIOKafkaConsumer:
    """A consumer positioned at the result topic's current end, before anything is produced."""
    spec = settings.topic(SETTINGS_RESULT)
    consumer = new_reader(settings)
    await consumer.start()
    partitions = all_partitions(spec)
    consumer.assign(partitions)
    ends = await consumer.end_offsets(partitions)
    for tp, offset in ends.items():
        consumer.seek(tp, offset)
    return consumer


async def _await_result(
    consumer: AIOKafkaConsumer, command_id: str, wait_s: float
) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while (left := deadline - loop.time()) > 0:
        batches = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
        for records in batches.values():
            for record in records:
                try:
                    event = parse_event(record.value)
                except InvalidEvent:
                    continue
                if isinstance(event.data, dict) and event.data.get("command_id") == command_id:
                    return event.data
    return None


def _get_handler(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_get(settings, args.customer, args.app))


async def _get(settings: Settings, customer: str, app: str) -> int:
    async with ExotelClient.from_settings(settings) as client:
        try:
            current = await client.get_settings(customer, app)
        except PipelineError as exc:
            print(f"exopipe settings get: {exc}", file=sys.stderr)
            return 1
    output = {
        "app_id": current.app_id,
        "settings": public_settings(current.settings),
        "created_at": current.created_at,
        "updated_at": current.updated_at,
    }
    print(json_codec.dumps_pretty(output).decode())
    return 0
