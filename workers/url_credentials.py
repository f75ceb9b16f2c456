"""Credentials inside URLs, replaced by a fixed marker before a URL goes anywhere but its target.

Webhook URLs carry secrets: our ingress takes its tenant secret as ``?token=`` or as the password
of the URL's userinfo (``workers/ingress/auth.py``), and other receivers do the same with ``key``,
``sig`` and the like. Such a URL is used as is only where it is meant to go (the PUT to Exotel);
in records, table changelogs and printed output it goes through :func:`redact_url`.

What is redacted:

* the password of the userinfo, everything after its first ``:`` (RFC 3986 section 3.2.1 says
  not to render that in clear): ``https://cust:SECRET@h/`` -> ``https://cust:%5Bredacted%5D@h/``.
  The user name is kept: it says *who* (our ingress expects the customer id there and never
  checks it), which helps whoever reads a record, and the password is the proof. A userinfo
  without a password (``https://TOKEN@h/``, ``https://TOKEN:@h/``) is the token-as-user-name
  habit: there the user name is redacted. (A token as the user name *with* a dummy password is
  the one userinfo shape whose secret is kept.)
* the non-empty value of every query parameter whose name is a credential name: one of
  :data:`CREDENTIAL_NAMES` without regard to case, or a longer name whose last word is one
  (``client_secret``, ``X-Amz-Signature``, ``hub.verify_token``, ``apiKey``). ``&`` and ``;``
  both separate parameters here, so a ``;``-separated secret is not missed. Parameters in the
  fragment, and a URL written unencoded inside a parameter's value, are treated the same way.

Inside a URL the marker is written percent-encoded (``%5Bredacted%5D``): RFC 3986 allows ``[``
and ``]`` only around an IP literal host, so the redacted URL stays a valid URI and every parser
reads the value back as ``[redacted]``. Everything else is kept byte for byte: a URL without
credentials comes back identical, other parameters keep their order, spelling and encoding.
Redacting twice gives the same result as once. Nothing here raises, whatever the input.

Not seen: a secret in a path segment (``/hooks/SECRET``), in a bare query (``?SECRET``), under
a parameter name that is not on the list, or inside a percent-encoded URL nested in a value.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

__all__ = [
    "CREDENTIAL_NAMES",
    "REDACTED",
    "URL_REDACTED",
    "carries_marker",
    "is_credential_name",
    "redact_json",
    "redact_query",
    "redact_text",
    "redact_url",
]

REDACTED = "[redacted]"
URL_REDACTED = quote(REDACTED, safe="")  # %5Bredacted%5D

# Parameter names (lower case) whose values are secrets; a name whose last word is one counts too.
CREDENTIAL_NAMES = frozenset(
    {
        "token",
        "secret",
        "key",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "pwd",
        "pass",
        "sig",
        "signature",
        "auth",
        "access_token",
        "credential",
        "credentials",
    }
)

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_SEPARATORS = re.compile(r"([&;])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORDS = re.compile(r"[^a-z0-9]+")
# In free text: "//userinfo@" (greedy, so the last "@" of an authority ends it, as for a URL) and
# "name=value" pairs whose name does not continue a longer word.
_USERINFO_IN_TEXT = re.compile(r"//([^/?#\s\"'<>]*)@")
_PAIR_IN_TEXT = re.compile(r"(?<![\w.%~+\-\[\]])([\w.%~+\-\[\]]+)=([^&;#\s\"'<>]*)")


def is_credential_name(name: str) -> bool:
    """Whether a parameter called ``name`` (as written, percent-encoded or not) holds a secret."""
    decoded = unquote_plus(name).strip()
    if decoded.lower() in CREDENTIAL_NAMES:
        return True
    words = [w for w in _WORDS.split(_CAMEL.sub(r"\1_\2", decoded).lower()) if w]
    return bool(words) and words[-1] in CREDENTIAL_NAMES


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by :data:`URL_REDACTED` (see the module docstring)."""
    rest, hash_, fragment = url.partition("#")
    rest, question, query = rest.partition("?")
    scheme = _SCHEME.match(rest)
    start = scheme.end() if scheme else 0
    if rest.startswith("//", start):
        begin = start + 2
        end = rest.find("/", begin)
        end = len(rest) if end < 0 else end
        userinfo, at, host = rest[begin:end].rpartition("@")
        if at:
            rest = f"{rest[:begin]}{_redact_userinfo(userinfo)}@{host}{rest[end:]}"
    if question:
        rest = f"{rest}?{redact_query(query)}"
    if hash_:
        rest = f"{rest}#{redact_text(fragment)}"
    return rest


def redact_query(query: str) -> str:
    """A query string (without ``?``) with the values of credential parameters redacted."""
    parts = _SEPARATORS.split(query)
    for index in range(0, len(parts), 2):
        name, equals, value = parts[index].partition("=")
        if equals and value and is_credential_name(name):
            parts[index] = f"{name}={URL_REDACTED}"
        elif equals:  # a URL nested in a value (``?next=https://u:p@h/?token=x``)
            parts[index] = f"{name}={redact_text(value)}"
    return "".join(parts)


def redact_text(text: str) -> str:
    """Free text (an error message, a header, a body) with URL credentials in it redacted.

    Every ``//user:password@`` and every ``name=value`` whose name is a credential name, wherever
    they appear; the rest of the text is kept.
    """
    # Pairs first: a redacted value can join what was around it into a "//...@" (a "/" in the
    # value kept it apart), and userinfo last leaves nothing for a second pass to find.
    text = _PAIR_IN_TEXT.sub(_redact_pair, text)
    return _USERINFO_IN_TEXT.sub(lambda m: f"//{_redact_userinfo(m[1])}@", text)


def redact_json(value: Any) -> Any:
    """A JSON value (an API's error body) with :func:`redact_text` applied to every string."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_json(item) for key, item in value.items()}
    return value


def carries_marker(url: str) -> bool:
    """Whether ``url`` holds the marker (raw or percent-encoded): it was redacted, not real."""
    return REDACTED in unquote(url).lower()


def _redact_userinfo(userinfo: str) -> str:
    user, colon, password = userinfo.partition(":")
    if password:
        return f"{user}:{URL_REDACTED}"
    if user:
        return f"{URL_REDACTED}{colon}"
    return userinfo


def _redact_pair(match: re.Match[str]) -> str:
    name, value = match[1], match[2]
    if value and is_credential_name(name):
        return f"{name}={URL_REDACTED}"
    return match[0]
