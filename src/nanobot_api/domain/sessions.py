"""Session keys: which conversation a request continues."""

from __future__ import annotations

import attrs

from nanobot_api.domain.errors import InvalidRequest, LeaseLost, SessionBusy

SESSION_ID_MAX_CHARS = 256
DEFAULT_SESSION_ID = "default"
API_CHANNEL = "api"


@attrs.frozen
class SessionKey:
    """A conversation's identity in the store: ``<channel>:<session id>``."""

    channel: str
    session_id: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.session_id}"

    @classmethod
    def parse(cls, text: str) -> SessionKey:
        """Reads ``api:abc`` back into a key; raises InvalidRequest if there is no channel."""
        channel, sep, session_id = text.partition(":")
        if not sep or not channel or not session_id:
            raise InvalidRequest(f"Session key {text!r} must look like 'api:<session_id>'")
        return cls(channel, session_id)


def validate_session_id(value: object, param: str = "session_id") -> str:
    """The session id as given, if it is 1-256 printable characters; else InvalidRequest."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string", param)
    if not 1 <= len(value) <= SESSION_ID_MAX_CHARS:
        raise InvalidRequest(f"{param} must be 1-{SESSION_ID_MAX_CHARS} characters long", param)
    if not value.isprintable():
        raise InvalidRequest(f"{param} must not contain control characters", param)
    return value


def api_session(session_id: object, param: str = "session_id") -> SessionKey:
    """The API session a request names; ``None`` is the shared ``api:default``."""
    if session_id is None:
        return SessionKey(API_CHANNEL, DEFAULT_SESSION_ID)
    return SessionKey(API_CHANNEL, validate_session_id(session_id, param))


@attrs.frozen
class Lease:
    """A process's hold on a session while one of its turns runs.

    ``token`` is the fencing token: it grows each time any process takes the session,
    so a commit carrying an older one is known to come from a holder that was
    overtaken. ``ticket`` is the turn's place in the session's queue in the store.
    """

    key: SessionKey
    token: int
    ticket: int


@attrs.frozen
class SessionHeaders:
    """Session ids a request carries beside its body (HTTP headers, for the HTTP
    adapter, which names them), each as ``(name, value)``.

    ``session`` names the session outright and must agree with a body field;
    ``chat_ids`` are front ends' chat ids, used in order when nothing else names one.
    """

    session: tuple[str, str] | None = None
    chat_ids: tuple[tuple[str, str], ...] = ()

    def named(self) -> tuple[str, str] | None:
        """The first one present, as (name, value), in precedence order."""
        if self.session is not None:
            return self.session
        return self.chat_ids[0] if self.chat_ids else None


def requested_session(body_id: object, headers: SessionHeaders) -> SessionKey | None:
    """The API session a request names by body field or header; None if it names none.

    The body field wins over the chat ids; a body field and a ``session`` header that
    disagree are refused, since either could be the caller's intent.
    """
    if body_id is not None:
        key = api_session(body_id)
        given = headers.session
        if given is not None and given[1] != key.session_id:
            raise InvalidRequest(
                f"session_id in the body and the {given[0]} header differ", "session_id"
            )
        return key
    named = headers.named()
    if named is None:
        return None
    name, value = named
    return api_session(value, name)


def session_busy(key: SessionKey) -> SessionBusy:
    """The refusal of a turn for a session that is running or awaiting another."""
    return SessionBusy(
        f"Session {key.session_id!r} is running another turn; send this one when it "
        'has ended (the server has api.busy = "reject")',
        retry_after_s=1.0,
    )


def stalled() -> LeaseLost:
    """The refusal of a turn whose place in the queue expired while it waited."""
    return LeaseLost(
        "This server stalled longer than storage.leaseS while the turn waited for its "
        "session; nothing was kept, try again"
    )


def lease_lost() -> LeaseLost:
    """The refusal of a commit (or renewal) by a holder that was overtaken."""
    return LeaseLost(
        "Another server took this session over while the turn ran (this one stalled "
        "longer than storage.leaseS); nothing of the turn was kept, try again"
    )
