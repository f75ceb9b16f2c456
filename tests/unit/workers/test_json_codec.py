"""The JSON codec's bytes are exactly their size: the enricher keeps hundreds of thousands."""

from __future__ import annotations

import tracemalloc

from workers import json_codec


def _held_bytes_per_value(make: object, count: int = 2000) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [make(i) for i in range(count)]  # type: ignore[operator]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(kept) == count
    return grown / count


def test_a_small_value_holds_about_its_own_length() -> None:
    value = {"ms": 1_772_427_600_000, "p": 3, "due": 1_772_434_800_000}
    encoded = json_codec.dumps(value)
    per_value = _held_bytes_per_value(lambda i: json_codec.dumps({**value, "p": i}))
    # A bytes object costs its length plus a 33-byte header, rounded by the allocator; orjson's
    # own result held 4 KiB here.
    assert per_value < len(encoded) + 128, per_value


def test_the_copy_is_the_same_json() -> None:
    value = {"key": "app0|+91", "entries": [{"t": 1, "id": "é"}], "none": None}
    assert json_codec.loads(json_codec.dumps(value)) == value
    expected = b'{"key":"app0|+91","entries":[{"t":1,"id":"\xc3\xa9"}],"none":null}'
    assert json_codec.dumps(value) == expected
