"""A quick yes/no check of a JSON Schema, compiled once into plain Python, for the hot path.

:mod:`jsonschema` walks the schema for every record (evolve, descend, one generator per keyword):
about 0.1 ms per webhook, a quarter of the ingress's time under load. This compiles the subset
of Draft 2020-12 our schemas use into nested closures that answer only "valid or not".

It must never say "valid" where :mod:`jsonschema` would not: each keyword below does exactly what
``jsonschema._keywords`` does (same type rules, same ``re.search``, the same format checker), and
a schema with any other keyword is not compiled at all (:func:`compile_check` returns ``None``).
When the check says "invalid", the caller asks :mod:`jsonschema` for the errors, so every message
still comes from it.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from typing import Any

from jsonschema import FormatChecker

__all__ = ["Check", "compile_check", "is_type"]

Check = Callable[[Any], bool]

# Keywords that never affect validity.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated"}
)


def _integer(value: Any) -> bool:
    # Draft 6 and later: 1.0 is an integer; bool is never a number.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Number)


_TYPES: dict[str, Check] = {
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "integer": _integer,
    "null": lambda v: v is None,
    "number": _number,
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
}


def is_type(value: Any, name: str) -> bool:
    """Draft 2020-12's type test (what ``Draft202012Validator.TYPE_CHECKER`` answers)."""
    return _TYPES[name](value)


def compile_check(schema: Any, formats: FormatChecker) -> Check | None:
    """A function telling whether a value is valid against ``schema``; ``None`` if the schema
    uses a keyword (or a keyword value) this module does not implement."""
    if schema is True:
        return lambda _: True
    if schema is False:
        return lambda _: False
    if not isinstance(schema, dict):
        return None
    text = _text_field(schema)
    if text is not None:
        return text
    checks: list[Check] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _keyword(keyword, value, schema, formats)
        if check is None:
            return None
        checks.append(check)
    return _all(checks)


def _text_field(schema: dict[str, Any]) -> Check | None:
    """Most fields are ``{"type": "string" (or ["string", "null"]), "minLength", "maxLength"}``:
    one test for the three keywords (a string has a length; null has none to check)."""
    keywords = {k for k in schema if k not in _ANNOTATIONS}
    if "type" not in keywords or not keywords <= {"type", "minLength", "maxLength"}:
        return None
    kind = schema["type"]
    if kind == "string":
        nullable = False
    elif isinstance(kind, list) and len(kind) == 2 and set(kind) == {"string", "null"}:
        nullable = True
    else:
        return None
    low, high = schema.get("minLength", 0), schema.get("maxLength", math.inf)
    if not all(_integer(n) or n == math.inf for n in (low, high)):
        return None
    if nullable:
        return lambda v: (isinstance(v, str) and low <= len(v) <= high) or v is None
    return lambda v: isinstance(v, str) and low <= len(v) <= high


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda _: True
    if len(checks) == 1:
        return checks[0]

    def check_all(v: Any) -> bool:
        for check in checks:
            if not check(v):
                return False
        return True

    return check_all


def _keyword(
    keyword: str, value: Any, schema: dict[str, Any], formats: FormatChecker
) -> Check | None:
    if keyword == "type":
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(n in _TYPES for n in names):
            return None
        tests = [_TYPES[n] for n in names]
        if len(tests) == 1:
            return tests[0]

        def check_types(v: Any) -> bool:
            for test in tests:
                if test(v):
                    return True
            return False

        return check_types
    if keyword in ("enum", "const"):
        # Only strings: jsonschema's equal() then is plain ==, and only a str can match a str.
        options = value if keyword == "enum" else [value]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            return None
        allowed = frozenset(options)
        return lambda v: isinstance(v, str) and v in allowed
    if keyword in ("maxLength", "minLength", "minimum", "minProperties"):
        if not _integer(value) and not (keyword == "minimum" and _number(value)):
            return None
        return _bound(keyword, value)
    if keyword == "pattern":
        search = re.compile(value).search
        return lambda v: not isinstance(v, str) or search(v) is not None
    if keyword == "format":
        return lambda v: formats.conforms(v, value)
    if keyword == "required":
        names = tuple(value)
        return lambda v: not isinstance(v, dict) or all(name in v for name in names)
    if keyword == "items":
        if "prefixItems" in schema:
            return None
        item = compile_check(value, formats)
        if item is None:
            return None
        return lambda v: not isinstance(v, list) or all(item(x) for x in v)
    if keyword == "properties":
        return _properties(value, formats)
    if keyword == "additionalProperties":
        if "patternProperties" in schema:
            return None
        return _additional(value, schema.get("properties", {}), formats)
    return None


def _bound(keyword: str, limit: Any) -> Check:
    if keyword == "maxLength":
        return lambda v: not isinstance(v, str) or len(v) <= limit
    if keyword == "minLength":
        return lambda v: not isinstance(v, str) or len(v) >= limit
    if keyword == "minProperties":
        return lambda v: not isinstance(v, dict) or len(v) >= limit
    return lambda v: not _number(v) or not v < limit  # minimum


def _properties(properties: Any, formats: FormatChecker) -> Check | None:
    if not isinstance(properties, dict):
        return None
    compiled = []
    for name, subschema in properties.items():
        check = compile_check(subschema, formats)
        if check is None:
            return None
        compiled.append((name, check))

    def check_properties(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for name, check in compiled:
            if name in v and not check(v[name]):
                return False
        return True

    return check_properties


def _additional(extra: Any, properties: Any, formats: FormatChecker) -> Check | None:
    known = frozenset(properties)
    if extra is False:
        return lambda v: not isinstance(v, dict) or all(name in known for name in v)
    check = compile_check(extra, formats)
    if check is None:
        return None
    return lambda v: (
        not isinstance(v, dict)
        or all(check(value) for name, value in v.items() if name not in known)
    )
