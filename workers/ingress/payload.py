"""Turn an HTTP request's body or query into the webhook's fields and the shape it came in.

JSON objects, form-encoded bodies and query strings are accepted. The ``token`` query parameter
is the tenant's secret: it is removed from the fields here, so it never reaches a record.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from multidict import MultiMapping

from workers import json_codec
from workers.ingress.normalize import InvalidWebhook

__all__ = ["SECRET_PARAMS", "parse_fields"]

SECRET_PARAMS = frozenset({"token"})


def parse_fields(
    method: str, content_type: str, body: bytes, query: MultiMapping[str]
) -> tuple[dict[str, Any], str]:
    """``(fields, source_format)``; :class:`InvalidWebhook` naming ``body`` when unreadable."""
    if method == "GET" or not body.strip():
        fields = _flatten(query.items())
        if not fields:
            raise InvalidWebhook("body", "empty: expected a JSON object, form fields or a query")
        return fields, "query"
    kind = content_type.split(";")[0].strip().lower()
    if (
        kind == "application/json"
        or kind.endswith("+json")
        or (not kind and body.lstrip()[:1] == b"{")
    ):
        try:
            value = json_codec.loads(body)
        except json_codec.JSONDecodeError as exc:
            raise InvalidWebhook("body", f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InvalidWebhook("body", f"must be a JSON object, got {type(value).__name__}")
        return value, "json"
    if kind in ("application/x-www-form-urlencoded", ""):
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise InvalidWebhook("body", "not valid form-encoded UTF-8") from None
        return _flatten(pairs), "form"
    raise InvalidWebhook("content-type", f"{kind!r} is not supported (JSON or form-encoded)")


def _flatten(pairs: Any) -> dict[str, Any]:
    """Repeated names become lists; secrets are dropped."""
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in SECRET_PARAMS:
            continue
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields
