"""deterministic_id, format_time and format_ms give exactly what their plain definitions give:
uuid5 of the joined parts, and strftime with a four-digit year (computed faster, not otherwise)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from topics.events import _ID_NAMESPACE, deterministic_id, format_ms, format_time

from .strategies import safe_text


@given(parts=st.lists(safe_text, max_size=5))
def test_deterministic_id_is_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    assert deterministic_id(*parts) == str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


@given(
    moment=st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones
    )
)
def test_format_time_is_strftime_with_a_four_digit_year(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    expected = (
        f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    )
    assert format_time(moment) == expected


@given(epoch_ms=st.integers(min_value=0, max_value=253_402_300_799_999))  # up to year 9999
def test_format_ms_writes_what_format_time_writes_for_the_same_millisecond(epoch_ms: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    assert format_ms(epoch_ms) == format_time(moment)
