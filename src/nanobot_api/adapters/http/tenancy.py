"""Whose request this is, for every route: the tenant the key stage found.

The tenant stage puts the request's :class:`Tenant` into its ASGI scope, so the chat
endpoint and every Quart route (through ``request.scope``) read the same one; a
request that passed no key stage (no keys configured) is the default tenant's.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Final

from nanobot_api.domain.tenants import DEFAULT_TENANT, Tenant

SCOPE_KEY: Final = "nanobot.tenant"


def tenant_of(scope: Mapping[str, Any]) -> Tenant:
    """The tenant of the request with this ASGI scope."""
    tenant = scope.get(SCOPE_KEY)
    return tenant if isinstance(tenant, Tenant) else DEFAULT_TENANT


def set_tenant(scope: MutableMapping[str, Any], tenant: Tenant) -> None:
    scope[SCOPE_KEY] = tenant
