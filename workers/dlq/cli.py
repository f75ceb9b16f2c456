"""``exopipe dlq list | replay --topic T [--since S] [--reason R] [--dry-run]``.

``list`` prints one line per dead letter (time, call_sid or command_id, app, outcome, reason,
attempts, detail). ``replay`` re-publishes the original events of the matching letters to their
source topic with a ``replaycount`` attribute (see :mod:`workers.dlq.letters` for why replaying
twice changes nothing); ``--dry-run`` prints what it would send. ``--since`` takes a duration
(``90m``, ``6h``, ``2d``) or an ISO 8601 time. Exit status: 0 fine, 1 something could not be
replayed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from topics.catalog import RECORDING_FAILED, SETTINGS_COMMAND, WEBHOOK_RECORDING_READY
from topics.events import InvalidEvent, parse_event
from workers.config import Settings
from workers.dlq.letters import (
    DLQ_TOPICS,
    DeadLetter,
    from_event,
    replay_command,
    replay_recording,
    replayable,
)
from workers.dlq.reader import read_one, read_since
from workers.kafka import produce_event, started_producer

__all__ = ["parse_since", "register"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``90m`` / ``6h`` / ``2d`` ago, or an ISO 8601 time (UTC when it names no zone)."""
    match = _DURATION.match(text.strip())
    if match:
        delta = timedelta(**{_UNITS[match[2]]: float(match[1])})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a duration (90m, 6h, 2d) or an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dlq", help="list dead letters, or replay them")
    actions = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    for name, text in (("list", "print what failed and why"), ("replay", "send it again")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--topic", required=True, choices=sorted(DLQ_TOPICS))
        action.add_argument("--since", type=parse_since, help="90m, 6h, 2d or an ISO time")
        action.add_argument("--reason", help="only letters with this reason (or outcome)")
        if name == "replay":
            action.add_argument("--dry-run", action="store_true", help="print, send nothing")
        action.set_defaults(handler=_list if name == "list" else _replay)


async def _letters(settings: Settings, args: argparse.Namespace) -> list[DeadLetter]:
    spec = DLQ_TOPICS[args.topic]
    found = []
    async for record in read_since(settings, settings.topic(spec), args.since):
        try:
            event = parse_event(record.value)
        except InvalidEvent:
            continue
        letter = from_event(spec, event, record.timestamp)
        if letter is not None and (args.reason is None or letter.reason == args.reason):
            found.append(letter)
    return found


def _list(args: argparse.Namespace, settings: Settings) -> int:
    letters = asyncio.run(_letters(settings, args))
    for letter in letters:
        print(letter.line())
    print(f"{len(letters)} dead letter(s) on {settings.topic(DLQ_TOPICS[args.topic]).name}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_replay_async(args, settings))


async def _replay_async(args: argparse.Namespace, settings: Settings) -> int:
    letters = [x for x in await _letters(settings, args) if replayable(x, args.reason)]
    recordings = args.topic == RECORDING_FAILED.name
    target = settings.topic(WEBHOOK_RECORDING_READY if recordings else SETTINGS_COMMAND)
    planned, problems = [], 0
    for letter in letters:
        try:
            if recordings:
                planned.append(replay_recording(letter))
                continue
            if letter.source_offset is None:
                raise ValueError(f"{letter.key}: the result does not say where its command was")
            record = await read_one(settings, target, *letter.source_offset)
            if record is None:
                raise ValueError(f"{letter.key}: its command is no longer on {target.name}")
            planned.append(replay_command(letter, parse_event(record.value, SETTINGS_COMMAND)))
        except (ValueError, InvalidEvent) as exc:
            problems += 1
            print(f"exopipe dlq: cannot replay {exc}", file=sys.stderr)
    verb = "would replay" if args.dry_run else "replayed"
    if not args.dry_run and planned:
        async with started_producer(settings) as producer:
            for key, event in planned:
                await produce_event(producer, target, event, key)
    for key, event in planned:
        # Commands are named by their (new) command id, recordings by their call_sid.
        name = event.data.get("command_id", key) if isinstance(event.data, dict) else key
        print(f"{verb} {name} -> {target.name} (replaycount {event.extensions['replaycount']})")
    print(f"{len(planned)} {verb}, {problems} could not be")
    return 1 if problems else 0
