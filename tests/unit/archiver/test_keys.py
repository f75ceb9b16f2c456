"""The key layout contract and URL scrubbing."""

from __future__ import annotations

import pytest

from workers.archiver.keys import extension_for, object_key, source_url


def test_hive_partitioned_key_with_utc_date() -> None:
    key = object_key(
        prefix="recordings",
        customer_id="acme",
        app_id="app1",
        call_sid="CA123",
        # 23:30 on the 1st in India is still the 1st in UTC at 18:00; this one crosses midnight.
        timestamp="2025-03-02T02:30:00+05:30",
        url="https://recordings.exotel.com/acc/CA123.wav?sig=x",
    )
    assert key == "recordings/customer_id=acme/app_id=app1/date=2025-03-01/CA123.wav"


@pytest.mark.parametrize("evil", ["../../etc", "a/b", "x=y", ".hidden"])
def test_segments_cannot_escape_their_partition(evil: str) -> None:
    key = object_key(
        prefix="recordings", customer_id=evil, app_id="a", call_sid=evil,
        timestamp="2025-01-01T00:00:00Z", url="https://h/x.mp3",
    )  # fmt: skip
    parts = key.split("/")
    assert len(parts) == 5
    assert parts[1].count("=") == 1
    assert ".." not in key


@pytest.mark.parametrize(
    ("url", "ext"),
    [("https://h/a.MP3", "mp3"), ("https://h/a.wav?x=1", "wav"), ("https://h/a", "mp3"),
     ("https://h/a.exe", "mp3"), ("https://h/dir.wav/", "mp3")],
)  # fmt: skip
def test_extension_from_url(url: str, ext: str) -> None:
    assert extension_for(url) == ext


def test_source_url_drops_credentials_query_and_fragment() -> None:
    url = "https://key:tok@recordings.exotel.com:8443/acc/CA1.mp3?Signature=abc#frag"
    assert source_url(url) == "https://recordings.exotel.com:8443/acc/CA1.mp3"
