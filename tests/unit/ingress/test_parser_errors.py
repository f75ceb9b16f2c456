"""Requests the HTTP parser refuses before the ingress sees them (a request line or a header
over 8190 bytes): answered 400 in plain text, as the OpenAPI document says, never recorded, and
with no secret in the logs.

aiohttp logs such a refusal with the parser's error, which quotes the first 100 bytes of the
line: the ``token`` parameter, or a Basic header's credentials, were in the ingress's log.
"""

from __future__ import annotations

import logging

from .conftest import Broker
from .test_security import NEW, ROTATING, basic, ingress

LONG = "x" * 9000


async def test_an_overlong_request_line_logs_no_token(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    broker = Broker()
    async with ingress(tmp_path, broker, ROTATING) as client:
        response = await client.get(f"/v1/c1/a1/callback?token={NEW}&CallSid={LONG}")
    assert response.status == 400
    assert response.content_type == "text/plain"
    assert "LineTooLong" in caplog.text  # still logged, without what was sent
    assert NEW not in caplog.text
    assert broker.sent == []  # the ingress never saw it: nothing to record


async def test_an_overlong_header_logs_no_credentials(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    broker = Broker()
    authorization = basic("c1", NEW)["Authorization"]
    async with ingress(tmp_path, broker, ROTATING) as client:
        response = await client.post(
            "/v1/c1/a1/popup", data=b"{}", headers={"Authorization": authorization + LONG}
        )
    assert response.status == 400
    assert "LineTooLong" in caplog.text
    assert authorization.split()[1] not in caplog.text
    assert broker.sent == []
