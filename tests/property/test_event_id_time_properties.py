"""deterministic_id and format_time give exactly what their plain definitions give: uuid5 of
the joined parts, and strftime with a four-digit year (they are computed faster, not otherwise)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from topics.events import _ID_NAMESPACE, deterministic_id, format_time

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
