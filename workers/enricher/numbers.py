"""Caller numbers through phonenumbers: E.164, ISO country, geo description, type, validity.

Bad input never raises here: an unparseable number comes back ``valid=False`` with the raw
value kept, so one odd webhook cannot stop the worker.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, geocoder

__all__ = ["caller_key", "describe_number"]

# phonenumbers' integer constants as the words the record uses.
_TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
_MAX_INPUT = 64


def _parse(raw: str, default_region: str) -> phonenumbers.PhoneNumber | None:
    """The best parse of ``raw``: as written, then with a ``+`` for bare international digits.

    Exotel's legacy payloads carry numbers like ``919876543210`` (country code, no ``+``) next
    to national ``09876543210``; the second try catches the first shape.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_INPUT:
        return None
    candidates = [text]
    if text.isdigit() and not text.startswith("0"):
        candidates.append("+" + text)
    first: phonenumbers.PhoneNumber | None = None
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_region)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return number
        first = first or number
    return first


@lru_cache(maxsize=65536)
def _describe(raw: str, default_region: str) -> tuple[tuple[str, Any], ...]:
    number = _parse(raw, default_region)
    if number is None or not phonenumbers.is_valid_number(number):
        facts: dict[str, Any] = {
            "raw": raw,
            "e164": None,
            "country": None,
            "region": None,
            "number_type": "unknown",
            "valid": False,
        }
    else:
        facts = {
            "raw": raw,
            "e164": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            "country": phonenumbers.region_code_for_number(number),
            "region": geocoder.description_for_number(number, "en") or None,
            "number_type": _TYPE_NAMES.get(phonenumbers.number_type(number), "unknown"),
            "valid": True,
        }
    return tuple(facts.items())


def describe_number(raw: str, default_region: str = "IN") -> dict[str, Any]:
    """The ``caller`` object of the enriched record (cached: callers repeat, parsing is slow)."""
    return dict(_describe(raw, default_region.upper()))


def caller_key(customer_id: str, app_id: str, caller: dict[str, Any]) -> str:
    """The repeat-count key: the customer's app and the E.164 number (trimmed raw if invalid).

    App ids are only unique within a customer, so the customer is part of the key. Keying by
    E.164 makes ``09876543210`` and ``+919876543210`` the same caller.
    """
    who = caller["e164"] or caller["raw"].strip()
    return f"{customer_id}/{app_id}|{who}"
