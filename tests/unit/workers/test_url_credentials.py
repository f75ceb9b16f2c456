"""Credentials in URLs are replaced by the marker; everything else stays byte for byte."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from workers.url_credentials import (
    REDACTED,
    URL_REDACTED,
    carries_marker,
    is_credential_name,
    redact_json,
    redact_query,
    redact_text,
    redact_url,
)

M = URL_REDACTED
# RFC 3986 section 3.2.1 and 3.4: userinfo = *( unreserved / pct-encoded / sub-delims / ":" ),
# query = *( pchar / "/" / "?" ).
_PCT = r"%[0-9A-Fa-f]{2}"
_RFC3986_USERINFO = re.compile(rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|{_PCT})*")
_RFC3986_QUERY = re.compile(rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|{_PCT})*")


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        # The ingress's two shapes (README, workers/ingress/auth.py).
        (
            "https://ingress.example.com/v1/cust_x/app_y/callback?token=S3CR3T",
            f"https://ingress.example.com/v1/cust_x/app_y/callback?token={M}",
        ),
        (
            "https://cust_x:S3CR3T@ingress.example.com/v1/cust_x/app_y/popup",
            f"https://cust_x:{M}@ingress.example.com/v1/cust_x/app_y/popup",
        ),
        # Other parameters keep their place, spelling and encoding.
        (
            "https://h.example/p?a=1&token=S&b=%20x+y&a=2",
            f"https://h.example/p?a=1&token={M}&b=%20x+y&a=2",
        ),
        # Names without regard to case, percent-encoded, or as the last word of a longer name.
        ("https://h.example/p?TOKEN=S&Api_Key=S", f"https://h.example/p?TOKEN={M}&Api_Key={M}"),
        ("https://h.example/p?api%5Fkey=S", f"https://h.example/p?api%5Fkey={M}"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Date=1&X-Amz-Signature=S",
            f"https://b.s3.amazonaws.com/k?X-Amz-Date=1&X-Amz-Signature={M}",
        ),
        (
            "https://h.example/p?client_secret=S&apiKey=S",
            f"https://h.example/p?client_secret={M}&apiKey={M}",
        ),
        ("https://h.example/p?hub.verify_token=S", f"https://h.example/p?hub.verify_token={M}"),
        ("https://h.example/p?user[password]=S", f"https://h.example/p?user[password]={M}"),
        # ";" separates too, and the fragment is looked at.
        ("https://h.example/p?a=1;sig=S", f"https://h.example/p?a=1;sig={M}"),
        (
            "https://h.example/cb#access_token=S&state=1",
            f"https://h.example/cb#access_token={M}&state=1",
        ),
        # A URL inside a value.
        (
            "https://h.example/p?next=https://u:S@x.example/?key=S",
            f"https://h.example/p?next=https://u:{M}@x.example/?key={M}",
        ),
        # Userinfo: the password goes, the user stays; a lone user name is taken for a token.
        ("https://TOKEN@h.example/", f"https://{M}@h.example/"),
        ("https://TOKEN:@h.example/", f"https://{M}:@h.example/"),
        ("https://u:p:q@h.example:8443/x", f"https://u:{M}@h.example:8443/x"),
        ("https://a@b:S@h.example/", f"https://a@b:{M}@h.example/"),
        ("wss://u:S@h.example/stream", f"wss://u:{M}@h.example/stream"),
        ("//u:S@h.example/", f"//u:{M}@h.example/"),
        # An "@" in the path is not userinfo.
        ("https://h.example/users/@me?x=1", "https://h.example/users/@me?x=1"),
    ],
)  # fmt: skip
def test_redacts_the_credential_and_keeps_the_rest(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert redact_url(redacted) == redacted  # twice is once


@pytest.mark.parametrize(
    "url",
    [
        "https://h.example/webhook/popup",
        "https://h.example/p?monkey=1&passthru=2&keyword=3&tokens=4&oauth=5",
        "https://h.example/p?token=&key",  # empty or valueless: nothing to hide
        "https://[::1]:8080/p?a=b#frag",
        "https://h.example/p?",
        "https://h.example/p#",
        "http://h.example:99999/",
        "not a url at all",
        "",
        "https://h.example/%ZZ?q=%",
    ],
)
def test_a_url_without_credentials_is_byte_identical(url: str) -> None:
    assert redact_url(url) == url


def test_the_marker_reads_back_as_redacted_and_parsers_keep_it() -> None:
    redacted = redact_url("https://cust:S@h.example/v1/c/a/cb?x=1&token=S")
    parts = urlsplit(redacted)
    assert parts.password == URL_REDACTED and parts.hostname == "h.example"
    assert parse_qs(parts.query) == {"x": ["1"], "token": [REDACTED]}
    assert str(httpx.URL(redacted)) == redacted  # a client that normalises URLs keeps it
    # Valid RFC 3986 (what a "format: uri" check applies); a raw "[redacted]" would not be.
    userinfo = parts.netloc.rpartition("@")[0]
    assert _RFC3986_USERINFO.fullmatch(userinfo) and _RFC3986_QUERY.fullmatch(parts.query)
    assert not _RFC3986_QUERY.fullmatch(f"token={REDACTED}")
    assert not _RFC3986_USERINFO.fullmatch(f"cust:{REDACTED}")


def test_credential_names() -> None:
    for name in ("token", "Secret", "KEY", "api_key", "apikey", "password", "pass", "sig"):
        assert is_credential_name(name), name
    for name in ("signature", "auth", "access_token", "X-Goog-Signature", "sessionToken"):
        assert is_credential_name(name), name
    for name in ("monkey", "passthru", "keyword", "author", "CallSid", "digits", "", "=", "%"):
        assert not is_credential_name(name), name


def test_text_query_and_json() -> None:
    message = "settings/popup_url: 'https://h.example/x?token=S1' is too long"
    assert (
        redact_text(message) == f"settings/popup_url: 'https://h.example/x?token={M}' is too long"
    )
    assert redact_text('see "https://u:S2@h.example/"') == f'see "https://u:{M}@h.example/"'
    assert redact_text("monkey=1 secret=S3 x") == f"monkey=1 secret={M} x"
    assert redact_query("CallSid=c&token=S&Digits=%221%22") == f"CallSid=c&token={M}&Digits=%221%22"
    body = {
        "error": {"message": "bad url https://h.example/?sig=S4", "code": 400},
        "n": [1, "key=S5"],
    }
    assert redact_json(body) == {
        "error": {"message": f"bad url https://h.example/?sig={M}", "code": 400},
        "n": [1, f"key={M}"],
    }


def test_carries_marker() -> None:
    assert carries_marker(f"https://h.example/?token={M}")
    assert carries_marker("https://h.example/?token=%5bredacted%5d")
    assert carries_marker("https://u:[redacted]@h.example/")
    assert not carries_marker("https://h.example/?token=S")
