"""Client address and scheme resolution through configured trusted proxies.

Forwarded headers are client-controlled unless a proxy we trust wrote them, so they are
honoured only when the direct peer is in a configured trusted network. The client is the
right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy: everything to
its left was written by the client and can be anything. The left-most entry, which many
frameworks use, is the one an attacker chooses.

Run uvicorn with ``--no-proxy-headers`` (or ``forwarded_allow_ips`` equal to these networks)
when using this resolver: uvicorn's own proxy handling trusts 127.0.0.1 by default and would
already have rewritten ``scope["client"]`` from the header.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Final

from starlette.types import Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["TrustedProxies", "parse_ip"]

# A forwarded chain longer than this is not a real deployment; parsing stops there so a
# hostile header cannot make resolution cost more than a few microseconds.
_MAX_HOPS: Final = 32


@functools.lru_cache(maxsize=4096)
def parse_ip(value: str) -> IPAddress | None:
    """Parse an address as found in a forwarded header or ASGI scope; None when invalid.

    Accepts bracketed IPv6 and ``host:port`` forms (``[::1]:443``, ``1.2.3.4:80``) because
    some proxies append the port; IPv4-mapped IPv6 addresses are unwrapped to IPv4 so one
    client cannot appear as two. Results are cached (bounded): the same peers recur.
    """
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
    return address


@functools.lru_cache(maxsize=4096)
def _canonical(value: str) -> str | None:
    address = parse_ip(value)
    return None if address is None else str(address)


class TrustedProxies:
    """Which direct peers may speak for the client, and what the client then is.

    Args:
        networks: CIDR networks (or single addresses) of the proxies in front of the
            service. Empty means no proxy is trusted and forwarded headers are ignored.
        forwarded_for_header: the header the proxies append the client address to.
        forwarded_proto_header: the header the proxies set to the original scheme.
    """

    __slots__ = ("_forwarded_for", "_forwarded_proto", "_networks")

    def __init__(
        self,
        networks: Iterable[str | IPNetwork] = (),
        *,
        forwarded_for_header: str = "x-forwarded-for",
        forwarded_proto_header: str = "x-forwarded-proto",
    ) -> None:
        parsed: list[IPNetwork] = []
        for network in networks:
            if isinstance(network, str):
                try:
                    parsed.append(ipaddress.ip_network(network.strip(), strict=True))
                except ValueError as exc:
                    raise ValueError(
                        f"trusted proxy network {network!r} is not a CIDR network"
                        f" (host bits must be zero, e.g. '10.0.0.0/8'): {exc}"
                    ) from None
            else:
                parsed.append(network)
        self._networks: tuple[IPNetwork, ...] = tuple(parsed)
        self._forwarded_for = forwarded_for_header.lower().encode("latin-1")
        self._forwarded_proto = forwarded_proto_header.lower().encode("latin-1")

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        """The configured trusted networks."""
        return self._networks

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self._networks]!r})"

    def is_trusted(self, address: str | IPAddress | None) -> bool:
        """True when ``address`` lies in a trusted proxy network; False for None or garbage."""
        if not self._networks or address is None:
            return False
        ip = parse_ip(address) if isinstance(address, str) else address
        if ip is None:
            return False
        return any(ip.version == net.version and ip in net for net in self._networks)

    def peer_is_trusted(self, scope: Scope) -> bool:
        """True when the direct TCP peer of this ASGI connection is a trusted proxy."""
        client = scope.get("client")
        return client is not None and self.is_trusted(client[0])

    def client_address(self, scope: Scope) -> str | None:
        """The address of the client that originated the request, as a normalised string.

        The direct peer unless it is a trusted proxy; then the right-most untrusted hop of
        the forwarded chain. A hop that is not a valid address ends the walk at the last
        trusted hop, since nothing left of it can be believed. None when the server did
        not report a peer (some test transports, Unix sockets).
        """
        client = scope.get("client")
        if client is None:
            return None
        if not self._networks:
            return _canonical(client[0])
        peer = parse_ip(client[0])
        if peer is None:
            return None
        if not self.is_trusted(peer):
            return str(peer)
        chain = self._header_values(scope, self._forwarded_for)
        if not chain:
            return str(peer)
        hops = ",".join(chain).split(",")
        current = peer
        for raw in reversed(hops[-_MAX_HOPS:]):
            hop = parse_ip(raw)
            if hop is None:
                return str(current)
            if not self.is_trusted(hop):
                return str(hop)
            current = hop
        return str(current)

    def scheme(self, scope: Scope) -> str:
        """The scheme the client used: ``X-Forwarded-Proto`` only from a trusted peer."""
        own = str(scope.get("scheme", "http"))
        if not self._networks or not self.peer_is_trusted(scope):
            return own
        values = self._header_values(scope, self._forwarded_proto)
        if not values:
            return own
        # Each proxy may append; the right-most was written by the proxy next to us.
        proto = values[-1].split(",")[-1].strip().lower()
        return proto if proto in {"http", "https", "ws", "wss"} else own

    @staticmethod
    def _header_values(scope: Scope, name: bytes) -> list[str]:
        return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]
