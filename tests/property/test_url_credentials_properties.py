"""URL redaction: never raises, redacting twice is once, and only the credential changes.

URLs are built from parts so the expected result is known exactly: the same parts with the
marker where the secret was. That checks that nothing else moved (order of parameters, other
values, encoding), not just that the secret is gone.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from workers.url_credentials import (
    CREDENTIAL_NAMES,
    URL_REDACTED,
    is_credential_name,
    redact_query,
    redact_text,
    redact_url,
)

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Characters a URL component may hold as is, minus the ones that end or separate parts here.
_PART = _ALNUM + "-._~!$'()*+,:@%"

schemes = st.sampled_from(["http", "https", "wss", "HTTPS"])
hosts = st.lists(st.text(_ALNUM, min_size=1, max_size=8), min_size=1, max_size=3).map(".".join)
ports = st.none() | st.integers(min_value=1, max_value=65535)
paths = st.lists(st.text(_PART + "=;&", max_size=8), max_size=3).map(
    lambda segments: "".join(f"/{s}" for s in segments)
)
plain_names = st.text(_ALNUM + "-_.", min_size=1, max_size=10).filter(
    lambda name: not is_credential_name(name)
)
# A value without "=" or "/" cannot hold a name=value pair or a nested URL of its own.
plain_values = st.text(_PART.replace("@", ""), max_size=10)
plain_pairs = st.lists(st.tuples(plain_names, plain_values), max_size=4)
separators = st.sampled_from(["&", ";"])
secrets = st.text(_ALNUM, min_size=6, max_size=20).map(lambda s: f"S3CR3T{s}")
credential_names = st.sampled_from(sorted(CREDENTIAL_NAMES)).flatmap(
    lambda name: st.sampled_from([name, name.upper(), name.title(), f"x-{name}", f"my_{name}"])
)


def _query(pairs: list[tuple[str, str]], separator: str) -> str:
    return separator.join(f"{name}={value}" for name, value in pairs)


# scheme://[userinfo]host[:port]path, the userinfo left to fill in.
origins = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{{}}{host}{f':{port}' if port else ''}{path}",
    schemes,
    hosts,
    ports,
    paths,
)


@given(text=st.text())
@example(text="//x&key=a/b;c@h")
@example(text="https://a@b:c@d?e=f#g?token=h")
def test_never_raises_and_twice_is_once(text: str) -> None:
    for redact in (redact_url, redact_query, redact_text):
        once = redact(text)
        assert isinstance(once, str)
        assert redact(once) == once


@given(
    origin=origins,
    pairs=st.none() | plain_pairs,
    separator=separators,
    fragment=st.none() | st.text(_PART.replace("@", ""), max_size=10),
)
def test_a_url_without_credentials_is_byte_identical(
    origin: str, pairs: list[tuple[str, str]] | None, separator: str, fragment: str | None
) -> None:
    url = origin.format("")
    if pairs is not None:
        url += f"?{_query(pairs, separator)}"
    if fragment is not None:
        url += f"#{fragment}"
    assert redact_url(url) == url


@given(
    origin=origins,
    before=plain_pairs,
    after=plain_pairs,
    separator=separators,
    name=credential_names,
    secret=secrets,
    user=st.none() | st.text(_ALNUM, min_size=1, max_size=8),
)
def test_only_the_secret_is_replaced(
    origin: str,
    before: list[tuple[str, str]],
    after: list[tuple[str, str]],
    separator: str,
    name: str,
    secret: str,
    user: str | None,
) -> None:
    """With a user name the secret is its password, else a credential parameter's value."""

    def build(value: str) -> str:
        if user is not None:
            query = _query([*before, *after], separator)
            return f"{origin.format(f'{user}:{value}@')}?{query}"
        return f"{origin.format('')}?{_query([*before, (name, value), *after], separator)}"

    redacted = redact_url(build(secret))
    assert secret not in redacted
    assert redacted == build(URL_REDACTED)
