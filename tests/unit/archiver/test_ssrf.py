"""The SSRF guard, case by case: every refusal and the few URLs it must let through."""

from __future__ import annotations

import pytest

from workers.archiver.ssrf import BadUrl, Guard, GuardPolicy, SsrfRefused, Target
from workers.config import RecordingSettings

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

# name -> A/AAAA answers, standing in for DNS
ANSWERS = {
    "recordings.exotel.com": [PUBLIC_V4],
    "v6.exotel.com": [PUBLIC_V6],
    "private.exotel.com": ["10.0.0.7"],
    "mixed.exotel.com": [PUBLIC_V4, "192.168.1.10"],
    "metadata.exotel.com": ["169.254.169.254"],
    "mapped.exotel.com": ["::ffff:127.0.0.1"],
    "nat64.exotel.com": ["64:ff9b::a9fe:a9fe"],
    "sixtofour.exotel.com": ["2002:7f00:1::1"],
    "teredo.exotel.com": ["2001:0:4136:e378:8000:63bf:80ff:fffe"],
    "cgnat.exotel.com": ["100.100.100.200"],
    "multicast.exotel.com": ["224.0.0.251"],
    "unspecified.exotel.com": ["0.0.0.0"],  # noqa: S104 - an answer to refuse, not a bind
    "reserved.exotel.com": ["240.0.0.1"],
    "localhost": ["127.0.0.1", "::1"],
}
ALLOWED = (
    "*.exotel.com",
    "localhost",
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "169.254.169.254",
    "100.100.100.200",
    "fd00:ec2::254",
    "64:ff9b::a9fe:a9fe",
    "0",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
)


async def fake_resolve(host: str, port: int) -> list[str]:
    if host not in ANSWERS:
        raise SsrfRefused(f"{host} does not resolve")
    return ANSWERS[host]


def guard(*, insecure: bool = False, ports: tuple[str, ...] = ("80", "443")) -> Guard:
    settings = RecordingSettings(allow_insecure=insecure, hosts=ALLOWED, ports=ports)
    return Guard(GuardPolicy.from_settings(settings), resolver=fake_resolve)


# Every host here is on the allowlist on purpose: the guard must refuse on what it resolves to
# or how it is spelled, not only because a name is unknown.
REFUSED = [
    ("https://127.0.0.1/r.mp3", "loopback"),
    ("https://localhost/r.mp3", "localhost resolves to loopback"),
    ("https://[::1]/r.mp3", "IPv6 loopback"),
    ("https://[::ffff:127.0.0.1]/r.mp3", "IPv4-mapped loopback"),
    ("https://169.254.169.254/latest/meta-data/", "cloud metadata, link-local"),
    ("https://2130706433/r.mp3", "decimal IPv4"),
    ("https://0x7f000001/r.mp3", "hex IPv4"),
    ("https://0177.0.0.1/r.mp3", "octal IPv4"),
    ("https://0/r.mp3", "zero as an address"),
    ("https://[fd00:ec2::254]/r.mp3", "IPv6 unique-local (EC2 metadata)"),
    ("https://100.100.100.200/r.mp3", "CGNAT (Alibaba metadata)"),
    ("https://[64:ff9b::a9fe:a9fe]/r.mp3", "NAT64 of 169.254.169.254"),
    ("https://private.exotel.com/r.mp3", "name resolving to a private address"),
    ("https://mixed.exotel.com/r.mp3", "public and private answers mixed"),
    ("https://metadata.exotel.com/r.mp3", "name resolving to the metadata address"),
    ("https://mapped.exotel.com/r.mp3", "AAAA answer of mapped loopback"),
    ("https://nat64.exotel.com/r.mp3", "AAAA answer of NAT64 link-local"),
    ("https://sixtofour.exotel.com/r.mp3", "6to4 of loopback"),
    ("https://teredo.exotel.com/r.mp3", "Teredo"),
    ("https://cgnat.exotel.com/r.mp3", "CGNAT answer"),
    ("https://multicast.exotel.com/r.mp3", "multicast answer"),
    ("https://unspecified.exotel.com/r.mp3", "unspecified answer"),
    ("https://reserved.exotel.com/r.mp3", "reserved answer"),
    ("https://recordings.exotel.com:6379/r.mp3", "Redis port"),
    ("https://recordings.exotel.com:9092/r.mp3", "Kafka port"),
    ("http://recordings.exotel.com/r.mp3", "plain http"),
    ("https://user:pw@recordings.exotel.com/r.mp3", "userinfo"),
    ("https://recordings.exotel.com@evil.example/r.mp3", "userinfo hiding the real host"),
    ("https://evil.example/r.mp3", "host not on the allowlist"),
    ("https://recordings.exotel.com.evil.example/r.mp3", "allowlisted name as a prefix"),
    ("https://exotel.com.evil.example/r.mp3", "suffix pattern must be a suffix"),
    ("https://nowhere.exotel.com/r.mp3", "name that does not resolve"),
]

BAD_URLS = [
    ("file:///etc/passwd", "file scheme"),
    ("gopher://recordings.exotel.com/", "gopher scheme"),
    ("//recordings.exotel.com/r.mp3", "no scheme"),
    ("https:///r.mp3", "no host"),
    ("https://recordings.exotel.com:99999/r.mp3", "port out of range"),
    ("", "empty"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED, ids=[why for _, why in REFUSED])
async def test_refused(url: str, why: str) -> None:
    with pytest.raises(SsrfRefused):
        await guard().check(url)


@pytest.mark.parametrize(("url", "why"), BAD_URLS, ids=[why for _, why in BAD_URLS])
async def test_bad_url(url: str, why: str) -> None:
    with pytest.raises(BadUrl):
        await guard().check(url)


INSECURE_REFUSED = [
    ("http://169.254.169.254/", "metadata stays refused"),
    ("http://private.exotel.com/", "private stays refused"),
    ("http://[fd00:ec2::254]/", "unique-local stays refused"),
    ("http://2130706433/", "decimal loopback stays refused"),
    ("http://127.0.0.1:6379/", "port still checked"),
    ("http://user:pw@localhost/", "userinfo still refused"),
]


@pytest.mark.parametrize(("url", "why"), INSECURE_REFUSED, ids=[why for _, why in INSECURE_REFUSED])
async def test_insecure_mode_only_admits_http_and_loopback(url: str, why: str) -> None:
    with pytest.raises(SsrfRefused):
        await guard(insecure=True).check(url)


async def test_insecure_mode_admits_loopback_over_http() -> None:
    target = await guard(insecure=True, ports=("8090",)).check("http://localhost:8090/r/a.mp3")
    assert target.address in {"127.0.0.1", "::1"}
    assert target.host_header == "localhost:8090"


async def test_public_name_gives_the_checked_address_to_connect_to() -> None:
    target = await guard().check("https://recordings.exotel.com/acc/CA1.mp3?sig=abc")
    assert target == Target(
        "https", "recordings.exotel.com", 443, PUBLIC_V4, "/acc/CA1.mp3?sig=abc"
    )
    assert target.connect_url == f"https://{PUBLIC_V4}:443/acc/CA1.mp3?sig=abc"
    assert target.host_header == "recordings.exotel.com"
    assert target.extensions == {"sni_hostname": "recordings.exotel.com"}


async def test_ipv6_answer_is_bracketed_in_the_connect_url() -> None:
    target = await guard().check("https://v6.exotel.com/CA1.wav")
    assert target.connect_url == f"https://[{PUBLIC_V6}]:443/CA1.wav"


async def test_resolves_exactly_once() -> None:
    calls: list[str] = []

    async def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return [PUBLIC_V4]

    policy = GuardPolicy.from_settings(RecordingSettings(hosts=("recordings.exotel.com",)))
    await Guard(policy, resolver=counting).check("https://recordings.exotel.com/a.mp3")
    assert calls == ["recordings.exotel.com"]


def test_default_allowlist_names_exotels_recording_hosts() -> None:
    policy = GuardPolicy.from_settings(RecordingSettings())
    assert policy.host_allowed("recordings.exotel.com")
    assert policy.host_allowed("s3-ap-southeast-1.amazonaws.com")
    assert not policy.host_allowed("s3.amazonaws.com")
    assert policy.ports == frozenset({80, 443})
