"""Caller numbers: E.164, country, region, type and validity; bad numbers never raise."""

from __future__ import annotations

import pytest

from workers.enricher.callee import describe_callee, sip_user
from workers.enricher.numbers import caller_key, describe_number


@pytest.mark.parametrize(
    ("raw", "e164", "country", "number_type"),
    [
        ("09876543210", "+919876543210", "IN", "mobile"),  # Exotel's national form
        ("+919876543210", "+919876543210", "IN", "mobile"),
        ("919876543210", "+919876543210", "IN", "mobile"),  # country code without +
        ("1800 425 1234", "+9118004251234", "IN", "toll_free"),
        ("+14155552671", "+14155552671", "US", "fixed_line_or_mobile"),
        ("+442079460958", "+442079460958", "GB", "fixed_line"),
        ("+447400123456", "+447400123456", "GB", "mobile"),
        ("+6591234567", "+6591234567", "SG", "mobile"),
        ("+61291234567", "+61291234567", "AU", "fixed_line"),
    ],
)
def test_valid_numbers_from_several_countries(
    raw: str, e164: str, country: str, number_type: str
) -> None:
    caller = describe_number(raw)
    assert caller["valid"] is True
    assert caller["raw"] == raw
    assert caller["e164"] == e164
    assert caller["country"] == country
    assert caller["number_type"] == number_type
    assert isinstance(caller["region"], str) and caller["region"]


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "anonymous", "12345", "+1 555", "+99912345678", "0000000000", "x" * 500, "+91 123"],
)
def test_bad_numbers_keep_raw_and_are_invalid(raw: str) -> None:
    caller = describe_number(raw)
    assert caller == {
        "raw": raw,
        "e164": None,
        "country": None,
        "region": None,
        "number_type": "unknown",
        "valid": False,
    }


def test_default_region_is_configurable() -> None:
    assert describe_number("020 7946 0958", "GB")["e164"] == "+442079460958"
    assert describe_number("020 7946 0958", "IN")["e164"] != "+442079460958"


def test_region_describes_the_place() -> None:
    assert describe_number("+442079460958")["region"] == "London"


def test_caller_key_joins_national_and_international_forms() -> None:
    national = caller_key("c1", "app1", describe_number("09876543210"))
    assert national == caller_key("c1", "app1", describe_number("+91 98765 43210"))
    assert national != caller_key("c1", "app2", describe_number("09876543210"))
    # The same app id under another customer is another app.
    assert national != caller_key("c2", "app1", describe_number("09876543210"))
    assert caller_key("c1", "app1", describe_number(" junk ")) == "c1/app1|junk"


@pytest.mark.parametrize(
    ("raw", "user"),
    [
        ("sip:agent42@example.exotel.com", "agent42"),
        ("sips:+918041234567@sip.example.com;transport=tls", "+918041234567"),
        ("<sip:alice;ext=1@host>", "alice"),
        ("SIP:Bob%20Smith@host", "Bob Smith"),
        ("sip:user:secret@host", "user"),
        ("08041234567", None),
        ("sip:hostonly", None),
        ("", None),
        ("tel:+918041234567", None),
    ],
)
def test_sip_user_part(raw: str, user: str | None) -> None:
    assert sip_user(raw) == user
    assert describe_callee(raw) == {"raw": raw, "user": user}
