"""The callee of a missed call: the raw ``to`` and, for a SIP URI, its user part.

Exotel's newer webhooks put a SIP URI in ``to`` (``sip:agent42@example.exotel.com``); older
ones put a number. The user part is what a callback team recognizes (the agent or extension).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import unquote

__all__ = ["describe_callee", "sip_user"]

_SCHEMES = ("sip:", "sips:")


@lru_cache(maxsize=4096)  # an app's callees are a few agents and extensions
def sip_user(raw: str) -> str | None:
    """``user`` from ``sip:user@host[;params]`` (also ``sips:`` and ``<sip:...>``); else None."""
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    lowered = text.lower()
    scheme = next((s for s in _SCHEMES if lowered.startswith(s)), None)
    if scheme is None:
        return None
    rest = text[len(scheme) :]
    if "@" not in rest:
        return None
    user = rest.rsplit("@", 1)[0]
    # user may carry a password (user:pw) or user params (user;phone-context=...): drop both.
    user = user.split(":", 1)[0].split(";", 1)[0]
    user = unquote(user)
    return user or None


def describe_callee(raw: str) -> dict[str, Any]:
    return {"raw": raw, "user": sip_user(raw)}
