"""Properties of the archiver's SSRF guard: every spelling of a non-public address is refused,
whether written in the URL or answered by DNS, and no URL makes the guard raise anything but a
refusal.

The host allowlist is opened to the exact host under test, so a refusal proves the guard looked
at the address (or the spelling), not only that the name was unknown.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.archiver.ssrf import Guard, GuardPolicy, SsrfRefused, Target

from .strategies import safe_text

PRIVATE_V4 = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
]  # fmt: skip
PRIVATE_V6 = [
    "::1/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "::/128", "fd00:ec2::/32",
    "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "3fff::/20",
]  # fmt: skip


def _in(nets: list[str]) -> st.SearchStrategy:
    def pick(net: str) -> st.SearchStrategy:
        network = ipaddress.ip_network(net)
        first, last = int(network.network_address), int(network.broadcast_address)
        return st.integers(first, last).map(lambda n: ipaddress.ip_address(n) if network.version
                                            == 4 else ipaddress.IPv6Address(n))  # fmt: skip

    return st.sampled_from(nets).flatmap(pick)


private_v4 = _in(PRIVATE_V4)
private_v6 = _in(PRIVATE_V6)


def v4_spellings(address: ipaddress.IPv4Address) -> list[str]:
    """Every way a URL can name ``address`` that some resolver or inet_aton accepts."""
    n = int(address)
    a, b, c, d = address.packed
    return [
        str(address),
        str(n),  # 2130706433
        hex(n),  # 0x7f000001
        hex(n).upper().replace("X", "x"),
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",  # 0177.0.0.01
        f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}",
        f"{a}.{(b << 16) | (c << 8) | d}",  # 127.1 style short forms
        f"{a}.{b}.{(c << 8) | d}",
        f"{a:04d}.{b}.{c}.{d}".lstrip() if a < 1000 else str(address),  # leading zeros (octal!)
        f"[::ffff:{address}]",
        f"[::ffff:{(n >> 16):x}:{(n & 0xFFFF):x}]",
        f"[64:ff9b::{address}]",
        f"[64:ff9b::{(n >> 16):x}:{(n & 0xFFFF):x}]",
        f"[2002:{(n >> 16):x}:{(n & 0xFFFF):x}::1]",  # 6to4
        f"{address}.",  # trailing dot
    ]


def _guard(host: str) -> Guard:
    policy = GuardPolicy(hosts=(host.strip("[]").lower().rstrip("."),), ports=frozenset({443}))

    async def resolve(name: str, port: int) -> list[str]:
        raise SsrfRefused(f"{name} does not resolve here")  # literals only in these tests

    return Guard(policy, resolver=resolve)


@pytest.mark.parametrize("index", range(15))
@given(address=private_v4)
async def test_every_spelling_of_a_private_v4_is_refused(
    index: int, address: ipaddress.IPv4Address
) -> None:
    host = v4_spellings(address)[index]
    with pytest.raises(SsrfRefused):
        await _guard(host).check(f"https://{host}/r.mp3")


@given(address=private_v6)
async def test_private_v6_literals_are_refused(address: ipaddress.IPv6Address) -> None:
    for host in (f"[{address}]", f"[{address.exploded}]", f"[{str(address).upper()}]"):
        with pytest.raises(SsrfRefused):
            await _guard(host).check(f"https://{host}/r.mp3")


@given(
    answers=st.lists(private_v4 | private_v6, min_size=1, max_size=3).map(
        lambda xs: [str(x) for x in xs]
    ),
    public=st.booleans(),
    zone=st.sampled_from(["", "%eth0"]),
)
async def test_a_name_with_any_private_answer_is_refused(
    answers: list[str], public: bool, zone: str
) -> None:
    """DNS may mix public and private answers (rebinding): one private answer refuses all."""
    answers = [f"{answers[0]}{zone}" if ":" in answers[0] else answers[0], *answers[1:]]
    if public:
        answers.insert(0, "93.184.216.34")

    async def resolve(name: str, port: int) -> list[str]:
        return answers

    guard = Guard(GuardPolicy(hosts=("rec.exotel.com",), ports=frozenset({443})), resolve)
    with pytest.raises(SsrfRefused):
        await guard.check("https://rec.exotel.com/r.mp3")
    mapped = [f"::ffff:{a}" for a in answers if ":" not in a]
    if mapped:
        guard = Guard(guard.policy, lambda name, port: _const(mapped))
        with pytest.raises(SsrfRefused):
            await guard.check("https://rec.exotel.com/r.mp3")


async def _const(values: list[str]) -> list[str]:
    return values


@given(n=st.sampled_from([0x08080808, 0x5DB8D822, 0x0D000001, 0x2D4F0001]), low=st.integers(0, 255))
async def test_a_public_literal_is_let_through(n: int, low: int) -> None:
    """The control: the guard is not refusing everything (8.8.8.x, 93.184.216.x, ...)."""
    address = str(ipaddress.IPv4Address((n & 0xFFFFFF00) | low))
    target = await _guard(address).check(f"https://{address}/r.mp3")
    assert target.address == address and target.port == 443


url_parts = st.sampled_from(["https://", "http://", "file://", "gopher://", "//", "", "HTTPS://"])
hostish = safe_text | st.sampled_from(
    ["rec.exotel.com", "[::1]", "[", "]", "rec.exotel.com:99999", "a@b", "rec.exotel.com:443"]
)


@given(prefix=url_parts, host=hostish, rest=safe_text)
async def test_no_url_raises_anything_but_a_refusal(prefix: str, host: str, rest: str) -> None:
    async def resolve(name: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    guard = Guard(GuardPolicy(hosts=("*.exotel.com",), ports=frozenset({443})), resolve)
    try:
        target = await guard.check(f"{prefix}{host}/{rest}")
    except SsrfRefused:
        return
    assert isinstance(target, Target)
    assert target.address == "93.184.216.34"
    assert target.host.endswith(".exotel.com")
