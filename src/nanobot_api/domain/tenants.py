"""Tenants: each named API key owns its sessions, and no other key can reach them.

A session id is a name a client chooses, so two keys may well choose the same one; the
tenant is part of the session key, so the same id names a different history under each
key. The unnamed key (``api.apiKey``, or no key at all) keeps the channel ``api``
(``api:<id>`` as before); a named key ``alice`` gets ``api/alice`` (``api/alice:<id>``).
A key name is restricted to letters, digits and ``._-``, so no session id and no other
key's name can produce the same session key.

Every endpoint that reads, continues, lists, retrieves or deletes something a session
owns goes through :meth:`Tenant.scope` (a key from a request) or :meth:`Tenant.owns` (a
key found in a store).
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.sessions import API_CHANNEL, SessionKey

_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SEPARATOR: Final = "/"


def check_key_name(name: str) -> str:
    """``name`` if it can name a tenant (1-64 of letters, digits, ``._-``)."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"a key name must be 1-64 letters, digits, '.', '_' or '-', got {name!r}"
        )
    return name


@attrs.frozen
class Tenant:
    """Whose requests these are: a named key, or (``name`` None) the unnamed one."""

    name: str | None = attrs.field(default=None)

    @name.validator
    def _check(self, _: object, value: str | None) -> None:
        if value is not None:
            check_key_name(value)

    @property
    def channel(self) -> str:
        """The channel of this tenant's API sessions."""
        return API_CHANNEL if self.name is None else f"{API_CHANNEL}{_SEPARATOR}{self.name}"

    @property
    def label(self) -> str:
        """How logs and metrics name it (never the key itself)."""
        return self.name or "default"

    def scope(self, key: SessionKey) -> SessionKey:
        """The request's API session as this tenant's: ``api:<id>`` -> ``<channel>:<id>``.
        A key of another channel (a chat platform's) is returned as it is."""
        if key.channel != API_CHANNEL or self.name is None:
            return key
        return SessionKey(self.channel, key.session_id)

    def owns(self, key: SessionKey) -> bool:
        """Whether a stored session belongs to this tenant (so it may be listed or read)."""
        return key.channel == self.channel

    def unscoped(self, key: SessionKey) -> SessionKey:
        """The session as the tenant named it (``api:<id>``), for answers to the client;
        raises InvalidRequest for a key it does not own."""
        if not self.owns(key):
            raise InvalidRequest("session not found", "session_id")
        return SessionKey(API_CHANNEL, key.session_id)


DEFAULT_TENANT: Final = Tenant()
