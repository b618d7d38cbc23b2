"""Stage 4: the API key, and so the tenant, of every request but the public ones.

Each configured key (``api.apiKey``, unnamed, and every named one of ``api.keys``) is
compared with the request's in constant time, every one of them every time, so an
answer's timing says nothing about how close a guess came nor to which key. An address
that sent ``api.authFailuresPerMin`` failed keys this minute is refused (429) before
anything is compared. An accepted request counts against its key's requests per
minute. The tenant goes into the request's scope (``tenancy.tenant_of``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from nanobot_api.adapters.http.pipeline.exchange import Exchange
from nanobot_api.adapters.http.tenancy import set_tenant
from nanobot_api.domain.errors import AuthenticationFailed
from nanobot_api.domain.ports import RequestLimiter
from nanobot_api.domain.tenants import DEFAULT_TENANT, Tenant

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class ApiKey:
    """A key the server accepts, and the tenant whose requests it makes them."""

    key: str = attrs.field(repr=False)
    tenant: Tenant = DEFAULT_TENANT


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def client_address(scope: Any, headers: dict[str, str], trusted: Sequence[Network]) -> str:
    """The client's address: the socket's, or, when the socket is a trusted proxy, the
    last address in X-Forwarded-For that is not one (a client can forge only the rest)."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return peer


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class AuthenticationStage:
    """Refuses (401) a request without ``Authorization: Bearer <a configured key>``
    and sets its tenant; with no key configured every request is the default tenant's."""

    def __init__(
        self,
        keys: Sequence[ApiKey],
        limiter: RequestLimiter | None = None,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self._keys = [(key.key.encode(), key.tenant) for key in keys if key.key]
        self._limiter = limiter
        self._trusted = tuple(trusted_proxies)

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        tenant = DEFAULT_TENANT
        if self._keys and not exchange.public:
            limiter = self._limiter
            address = client_address(exchange.scope, exchange.headers, self._trusted)
            if limiter is not None:
                await limiter.check_address(address)
            found = self.match(exchange.headers.get("authorization", ""))
            if found is None:
                if limiter is not None:
                    await limiter.auth_failed(address)
                raise AuthenticationFailed("Invalid API key")
            tenant = found
            if limiter is not None:
                await limiter.count_request(tenant)
        set_tenant(exchange.scope, tenant)  # type: ignore[arg-type]
        await call_next(exchange)

    def match(self, header: str) -> Tenant | None:
        """The tenant of the bearer key in ``header``, or None."""
        scheme, _, token = header.partition(" ")
        given = token.strip().encode("utf-8", "replace")
        found = None
        for key, tenant in self._keys:
            # Every key is compared, whichever matched: the time is the same for all.
            if hmac.compare_digest(given, key) and found is None:
                found = tenant
        return found if scheme.lower() == "bearer" else None
