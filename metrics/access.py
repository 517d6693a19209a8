"""Who may scrape: the holder of ``WHALEFALL_METRICS_TOKEN``, or a client in ``WHALEFALL_METRICS_ALLOW``.

- Token: ``Authorization: Bearer <token>``, compared in constant time. An empty token turns this way off.
- Address: ``WHALEFALL_METRICS_ALLOW``, comma-separated CIDRs (or a list), default loopback only
  (``127.0.0.1/32,::1/128``); an empty value allows no address, so only the token gets in. An entry that
  is not a network is logged and ignored (it never widens the list).

The client address is ``REMOTE_ADDR``, or, behind ``WHALEFALL_LOGIN_PROXY_COUNT`` trusted proxies, the
entry the nearest of them wrote in ``X-Forwarded-For`` (the rule ``api.lockout.client_ip`` applies to
sign-ins; repeated here because ``metrics`` and ``api`` are siblings that do not import each other).

Why a forwarded request is never let in by address when no proxy is declared: a TLS proxy on the same
host makes every request arrive from 127.0.0.1, so the loopback default would open the metrics to the
whole internet. Such a request names its client in a forwarding header; with no proxy count to say which
entry to believe, it gets in with the token only.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

from config.logging import log_event

logger = logging.getLogger("whalefall.metrics")

DEFAULT_ALLOW = "127.0.0.1/32,::1/128"
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            log_event(
                logger,
                logging.ERROR,
                f"WHALEFALL_METRICS_ALLOW: {entry!r} is not an address or a network (CIDR); ignored",
                module="metrics",
                operation="allow_list",
            )
    return tuple(networks)


def allowed_networks() -> tuple[Network, ...]:
    raw = getattr(settings, "WHALEFALL_METRICS_ALLOW", DEFAULT_ALLOW)
    if raw is None:
        raw = DEFAULT_ALLOW
    parts = raw.split(",") if isinstance(raw, str) else [str(p) for p in raw]
    return _parse_networks(tuple(p.strip() for p in parts if p.strip()))


def client_address(request: HttpRequest) -> str | None:
    """The scraper's address, or None when it cannot be trusted (see the module's docstring)."""
    remote = request.META.get("REMOTE_ADDR")
    try:
        count = int(getattr(settings, "WHALEFALL_LOGIN_PROXY_COUNT", 0) or 0)
    except (TypeError, ValueError):
        count = 0
    if count <= 0:
        if any(request.META.get(header) for header in FORWARDING_HEADERS):
            return None
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < count:
        return remote
    return hops[-count]


def address_allowed(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)  # ::ffff:10.0.0.5 from a dual-stack listener
    return any(c in network for c in candidates for network in allowed_networks() if c.version == network.version)


def token_matches(request: HttpRequest) -> bool:
    token = getattr(settings, "WHALEFALL_METRICS_TOKEN", "") or ""
    if not token:
        return False
    scheme, _sep, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def scrape_allowed(request: HttpRequest) -> tuple[bool, str | None]:
    """(allowed, the client address as judged) for one request."""
    address = client_address(request)
    return token_matches(request) or address_allowed(address), address
