"""A replayed settings command carries the real URLs of the original command, never redacted ones.

Results and state records show URLs with their credentials redacted, so a replay must not be
rebuilt from them: ``exopipe dlq replay`` reads the original command from the command topic (at
the result's ``source_offset``). A command that holds the marker anyway is refused by the worker.
"""

from __future__ import annotations

from topics.catalog import SETTINGS_COMMAND, SETTINGS_RESULT
from topics.events import make_event
from workers.dlq.letters import from_event, replay_command
from workers.settings_applier.commands import Command, Rejected, parse_command
from workers.settings_applier.records import Outcome, result_event
from workers.url_credentials import URL_REDACTED, redact_url

URL = "https://ingress.example.com/v1/acme/app1/callback?token=S3CR3T-9c1d"


def _command(url: str):  # noqa: ANN202
    data = {
        "command_id": "cmd-1",
        "customer_id": "acme",
        "app_id": "app1",
        "settings": {"callback_url": url},
    }
    return make_event(SETTINGS_COMMAND, data, source="t")


def test_replay_uses_the_original_command_and_its_real_url() -> None:
    original = _command(URL)
    parsed = parse_command(original.to_bytes(), raw_cap=64)
    assert isinstance(parsed, Command)
    failed = result_event(
        parsed, Outcome("failed", attempts=5, errors=["gave up"]), dedup_key="cmd-1", partition=2,
        offset=41,
    )  # fmt: skip
    letter = from_event(SETTINGS_RESULT, failed, 0)
    assert letter is not None and letter.source_offset == (2, 41)

    _, replayed = replay_command(letter, original)
    again = parse_command(replayed.to_bytes(), raw_cap=64)
    assert isinstance(again, Command) and again.settings == {"callback_url": URL}


def test_a_command_rebuilt_from_a_redacted_url_is_refused() -> None:
    redacted = redact_url(URL)
    assert redacted.endswith(f"token={URL_REDACTED}")
    refused = parse_command(_command(redacted).to_bytes(), raw_cap=64)
    assert isinstance(refused, Rejected)
    assert any("callback_url" in e and "real URL" in e for e in refused.errors), refused.errors
