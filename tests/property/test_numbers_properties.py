"""Properties of the enricher's number parsing: no input raises, a valid number's E.164 parses
back to itself, and the national and international spellings of one number share a caller key."""

from __future__ import annotations

import phonenumbers
from hypothesis import given
from hypothesis import strategies as st

from workers.enricher.numbers import caller_key, describe_number

from .strategies import safe_text

REGIONS = ["IN", "US", "GB", "SG", "AE", "in", "ZZ", ""]
phone_like = st.text(alphabet="0123456789+-() .#*", max_size=30)


@given(raw=safe_text | phone_like | st.text(max_size=200), region=st.sampled_from(REGIONS))
def test_describe_never_raises_and_is_consistent(raw: str, region: str) -> None:
    facts = describe_number(raw, region or "IN")
    assert facts["raw"] == raw
    assert facts["valid"] == (facts["e164"] is not None)
    if facts["valid"]:
        assert facts["e164"].startswith("+")
        # E.164 is a fixed point: describing it again gives the same number.
        assert describe_number(facts["e164"], "IN")["e164"] == facts["e164"]
    key = caller_key("cust", "app", facts)
    assert key.startswith("cust/app|")


KINDS = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
region_numbers = st.tuples(st.sampled_from(["IN", "US", "GB", "SG", "AE"]), st.sampled_from(KINDS))


@given(pair=region_numbers, spelling=st.sampled_from(["E164", "INTERNATIONAL", "NATIONAL", "bare"]))
def test_spellings_of_one_number_share_a_key(pair: tuple[str, int], spelling: str) -> None:
    region, kind = pair
    number = phonenumbers.example_number_for_type(region, kind)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if spelling == "bare":
        text = e164.lstrip("+")  # the legacy payloads' 919876543210
    else:
        text = phonenumbers.format_number(number, getattr(phonenumbers.PhoneNumberFormat, spelling))
    facts = describe_number(text, region)
    assert facts["e164"] == e164
    assert caller_key("c", "a", facts) == caller_key("c", "a", describe_number(e164, "IN"))
