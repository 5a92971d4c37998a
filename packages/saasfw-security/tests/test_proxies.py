from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Scope

from saasfw.security._proxies import TrustedProxies, parse_ip


def _scope(peer: str | None, *headers: tuple[str, str], scheme: str = "http") -> Scope:
    return {
        "type": "http",
        "scheme": scheme,
        "client": None if peer is None else (peer, 50000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:8443", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("", None),
        ("[::1", None),
        ("1" * 100, None),
    ],
)
def test_parse_ip_normalises_or_refuses(raw: str, expected: str | None) -> None:
    parsed = parse_ip(raw)
    assert (None if parsed is None else str(parsed)) == expected


def test_without_trusted_proxies_forwarded_headers_are_ignored() -> None:
    proxies = TrustedProxies()
    scope = _scope("203.0.113.7", ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "https"))
    assert proxies.client_address(scope) == "203.0.113.7"
    assert proxies.scheme(scope) == "http"
    assert not proxies.peer_is_trusted(scope)


def test_untrusted_peer_cannot_claim_another_address() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    scope = _scope("203.0.113.7", ("X-Forwarded-For", "10.0.0.5, 1.1.1.1"))
    assert proxies.client_address(scope) == "203.0.113.7"


def test_right_most_untrusted_hop_is_the_client() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "192.168.0.0/16"])
    # The client wrote "6.6.6.6" itself; the edge proxy appended the real peer 203.0.113.7;
    # an inner proxy appended the edge proxy's address.
    scope = _scope("10.0.0.2", ("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 192.168.1.1"))
    assert proxies.client_address(scope) == "203.0.113.7"


def test_repeated_forwarded_headers_form_one_chain() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    scope = _scope("10.0.0.2", ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7"))
    assert proxies.client_address(scope) == "203.0.113.7"


def test_garbage_hop_stops_at_the_last_trusted_hop() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    scope = _scope("10.0.0.2", ("X-Forwarded-For", "203.0.113.7, not-an-ip, 10.0.0.9"))
    assert proxies.client_address(scope) == "10.0.0.9"


def test_all_trusted_chain_yields_left_most_trusted_hop() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    scope = _scope("10.0.0.2", ("X-Forwarded-For", "10.0.0.3, 10.0.0.4"))
    assert proxies.client_address(scope) == "10.0.0.3"


def test_trusted_peer_without_header_is_the_client() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_address(_scope("10.0.0.2")) == "10.0.0.2"


def test_missing_peer_is_none() -> None:
    assert TrustedProxies(["10.0.0.0/8"]).client_address(_scope(None)) is None
    assert TrustedProxies().client_address(_scope("not an address")) is None


def test_scheme_from_trusted_peer_only() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    trusted = _scope("10.0.0.2", ("X-Forwarded-Proto", "https"))
    untrusted = _scope("203.0.113.7", ("X-Forwarded-Proto", "https"))
    assert proxies.scheme(trusted) == "https"
    assert proxies.scheme(untrusted) == "http"
    assert proxies.scheme(_scope("10.0.0.2", ("X-Forwarded-Proto", "gopher"))) == "http"


def test_ipv6_networks_and_mixed_families() -> None:
    proxies = TrustedProxies(["2001:db8:1::/48", "127.0.0.1/32"])
    assert proxies.is_trusted("2001:db8:1::5")
    assert proxies.is_trusted("::ffff:127.0.0.1")
    assert not proxies.is_trusted("2001:db8:2::5")
    assert not proxies.is_trusted(None)
    assert not proxies.is_trusted("garbage")


def test_invalid_network_is_refused_with_guidance() -> None:
    with pytest.raises(ValueError, match="not a CIDR network"):
        TrustedProxies(["10.0.0.1/8"])


def test_repr_shows_networks_only() -> None:
    assert repr(TrustedProxies(["10.0.0.0/8"])) == "TrustedProxies(['10.0.0.0/8'])"
    assert TrustedProxies([ipaddress.ip_network("10.0.0.0/8")]).networks[0].prefixlen == 8


_ipv4 = st.ip_addresses(v=4).map(str)


@given(peer=_ipv4, chain=st.lists(st.text(max_size=20) | _ipv4, max_size=40))
def test_untrusted_peer_is_always_the_answer(peer: str, chain: list[str]) -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    if proxies.is_trusted(peer):
        return
    scope = _scope(peer, ("X-Forwarded-For", ", ".join(chain)))
    assert proxies.client_address(scope) == str(ipaddress.ip_address(peer))


@given(spoofed=st.lists(st.text(max_size=30) | _ipv4, max_size=40))
def test_client_controlled_prefix_never_changes_the_answer(spoofed: list[str]) -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    chain = ", ".join([*(s.replace(",", "") for s in spoofed), "198.51.100.20"])
    scope = _scope("10.1.2.3", ("X-Forwarded-For", chain))
    assert proxies.client_address(scope) == "198.51.100.20"
