"""Rejected records keep what came and why, and never a secret."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from topics.catalog import WEBHOOK_REJECTED
from topics.schemas import violations
from workers.ingress.reject import rejected_data


def _rejected(**given: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "reason": "invalid_payload",
        "errors": [],
        "status": 400,
        "kind": "popup",
        "customer_id": "c1",
        "app_id": "a1",
        "call_sid": None,
        "received_at": datetime(2024, 6, 15, tzinfo=UTC),
        "remote_addr": None,
        "headers": {},
        "body": b"",
        "body_size": 0,
        "body_cap": 100,
    }
    return rejected_data(**(base | given))


def test_a_get_keeps_its_query_as_body_with_the_token_redacted():
    data = _rejected(
        method="GET", path="/v1/c1/a1/callback", query_string="CallSid=x&token=abc&Digits=%221%22"
    )
    assert data["body"] == "CallSid=x&token=%5Bredacted%5D&Digits=%221%22"
    assert data["url"] == "/v1/c1/a1/callback?CallSid=x&token=%5Bredacted%5D&Digits=%221%22"


def test_no_secret_survives_anywhere():
    data = _rejected(
        errors=["body: not valid JSON"],
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
    assert data["url"] == "/v1/c1/a1/popup?token=%5Bredacted%5D&x=1"
    assert data["body_truncated"] is True
    assert len(data["body"]) <= 50
    assert violations(WEBHOOK_REJECTED, data) == []
