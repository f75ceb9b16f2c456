"""Rejected records keep what came and why, and never a secret."""

from __future__ import annotations

from datetime import UTC, datetime

from topics.catalog import WEBHOOK_REJECTED
from topics.schemas import violations
from workers.ingress.reject import rejected_data, scrub_url


def test_scrub_url_drops_the_token():
    assert scrub_url("/v1/c/a/popup", "token=abc&x=1") == "/v1/c/a/popup?x=1"
    assert scrub_url("/v1/c/a/popup", "token=abc") == "/v1/c/a/popup"


def test_no_secret_survives_anywhere():
    data = rejected_data(
        reason="invalid_payload",
        errors=["body: not valid JSON"],
        status=400,
        kind="popup",
        customer_id="c1",
        app_id="a1",
        call_sid=None,
        received_at=datetime(2024, 6, 15, tzinfo=UTC),
        remote_addr="127.0.0.1",
        method="POST",
        path="/v1/c1/a1/popup",
        query_string="token=hunter2&x=1",
        headers={
            "Authorization": "Basic aHVudGVyMg==",
            "Cookie": "s=1",
            "Referer": "https://x/v1/c1/a1/popup?token=hunter2",
            "X-Echo": "hunter2",
            "Content-Type": "application/json",
        },
        body=b'{"oops": "hunter2"' + b"x" * 100,
        body_size=118,
        body_cap=50,
        secrets=["hunter2"],
    )
    text = repr(data)
    assert "hunter2" not in text
    assert "aHVudGVyMg" not in text
    assert "Authorization" not in data["headers"] and "Cookie" not in data["headers"]
    assert data["url"] == "/v1/c1/a1/popup?x=1"
    assert data["body_truncated"] is True
    assert len(data["body"]) <= 50
    assert violations(WEBHOOK_REJECTED, data) == []
