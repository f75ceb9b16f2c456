"""The SSRF guard: decide whether a recording URL from a webhook may be fetched, and where to.

Recording URLs arrive inside webhook payloads that anyone who knows the ingress URL can forge, so
every URL (and every redirect hop) passes :meth:`Guard.check` before a byte is sent. The checks,
in order: scheme (https; http only in insecure mode), no userinfo, a canonical host (numeric IPv4
spellings such as ``2130706433``, ``0x7f000001`` or ``0177.0.0.1`` are refused outright rather
than normalized), the host allowlist, the port allowlist, then ONE resolution whose every A/AAAA
answer must be globally routable after unwrapping IPv4-mapped, 6to4, Teredo and NAT64
(``64:ff9b::/96``) addresses. The result is a :class:`Target` that names the checked address:
the fetcher connects to that address (with the name in the Host header and TLS SNI), so a second
DNS answer cannot rebind the request to somewhere else.

This module must never perform the HTTP request itself, and never resolve a name twice.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from workers.config import RecordingSettings
from workers.errors import ConfigError, PermanentError

__all__ = [
    "Guard",
    "GuardPolicy",
    "Resolver",
    "SsrfRefused",
    "Target",
    "is_public",
    "system_resolver",
    "unwrap",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_OK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Special-purpose blocks that some Python patch releases' registry tables still call global
# (3.11.7 says 192.0.0.8 is global; 3fff::/20 and site-local fec0::/10 pass is_global too):
# refused here whatever the interpreter's tables say.
_NEVER = tuple(
    ipaddress.ip_network(net)
    for net in ("192.0.0.0/24", "192.88.99.0/24", "3fff::/20", "fec0::/10", "5f00::/16")
)


class SsrfRefused(PermanentError):
    """The URL may not be fetched; ``reason`` is a short code for the failed record."""

    reason = "ssrf_refused"


class BadUrl(SsrfRefused):
    """Not a fetchable URL at all (no host, unknown scheme, unparsable)."""

    reason = "bad_url"


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard admits; built once from :class:`RecordingSettings`."""

    hosts: tuple[str, ...]
    ports: frozenset[int]
    allow_insecure: bool = False

    @classmethod
    def from_settings(cls, recording: RecordingSettings) -> GuardPolicy:
        try:
            ports = frozenset(int(port) for port in recording.ports)
        except ValueError:
            raise ConfigError(f"EXOPIPE_RECORDING_PORTS={recording.ports!r}: not ports") from None
        hosts = tuple(host.strip().lower().rstrip(".") for host in recording.hosts if host.strip())
        return cls(hosts=hosts, ports=ports, allow_insecure=recording.allow_insecure)

    def host_allowed(self, host: str) -> bool:
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to ``address``, present ``host`` (Host header and SNI)."""

    scheme: str
    host: str
    port: int
    address: str
    path: str

    @property
    def connect_url(self) -> str:
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        literal = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme] == self.port
        return literal if default else f"{literal}:{self.port}"

    @property
    def extensions(self) -> dict[str, str]:
        """httpx request extensions: verify TLS against the name, not the address."""
        return {"sni_hostname": self.host} if self.scheme == "https" else {}


async def system_resolver(host: str, port: int) -> list[str]:
    """Every A/AAAA answer for ``host``, from the OS resolver, off the event loop."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SsrfRefused(f"{host} does not resolve: {exc}") from None
    return [str(info[4][0]) for info in infos]


def unwrap(address: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address it embeds (mapped, 6to4, Teredo, NAT64)."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _routable(address: IPAddress) -> bool:
    if any(address.version == net.version and address in net for net in _NEVER):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def is_public(address: IPAddress, *, allow_loopback: bool = False) -> bool:
    """True when the address and everything it wraps is globally routable."""
    for inner in unwrap(address):
        if allow_loopback and any(inner in net for net in _LOOPBACK_OK):
            continue
        if not _routable(inner):
            return False
    # Wrappers themselves (64:ff9b::/96, ::ffff:0:0/96) are not global in Python's registry
    # tables, so even a wrapped public IPv4 is refused: Exotel's hosts answer with plain A/AAAA.
    return True


def _literal(host: str) -> IPAddress | None:
    """The IP a host literal names, or ``None`` for a name; refuses odd IPv4 spellings."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
    except OSError:
        return None
    # inet_aton accepts decimal, hex, octal and short forms that ipaddress does not.
    raise SsrfRefused(f"non-canonical IPv4 literal {host!r}")


class Guard:
    """Checks URLs against a :class:`GuardPolicy`; ``resolver`` is injectable for tests."""

    def __init__(self, policy: GuardPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self._resolve = resolver

    async def check(self, url: str) -> Target:
        """The :class:`Target` to connect to, or :class:`SsrfRefused` saying why not."""
        scheme, host, port, path = self._parse(url)
        literal = _literal(host)
        if literal is not None and literal.version == 6:
            host = str(literal)
        if not self.policy.host_allowed(host):
            raise SsrfRefused(f"host {host!r} is not on the recording host allowlist")
        if port not in self.policy.ports:
            raise SsrfRefused(f"port {port} is not allowed")
        answers = [str(literal)] if literal is not None else await self._resolve(host, port)
        addresses = self._check_addresses(host, answers)
        return Target(scheme=scheme, host=host, port=port, address=str(addresses[0]), path=path)

    def _parse(self, url: str) -> tuple[str, str, int, str]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BadUrl(f"unparsable URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise BadUrl(f"scheme {scheme or '(none)'!r} is not fetchable")
        if scheme == "http" and not self.policy.allow_insecure:
            raise SsrfRefused("plain http is refused (https only)")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise SsrfRefused("credentials in the URL are refused")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise BadUrl("URL has no host")
        if not host.isascii() or any(ch in host for ch in "%\\/ "):
            raise SsrfRefused(f"host {host!r} is not a plain ASCII name")
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme], path

    def _check_addresses(self, host: str, answers: Iterable[str]) -> list[IPAddress]:
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                address = ipaddress.ip_address(answer.split("%", 1)[0])
            except ValueError:
                raise SsrfRefused(f"{host} resolved to an unparsable address") from None
            if not is_public(address, allow_loopback=self.policy.allow_insecure):
                raise SsrfRefused(f"{host} resolves to non-public address {address}")
            addresses.append(address)
        if not addresses:
            raise SsrfRefused(f"{host} has no addresses")
        return addresses
