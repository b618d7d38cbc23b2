"""Every error nanobot-api reports on purpose.

    NanobotError
    ├── InvalidRequest          the request itself is wrong (a field, a model, a session id)
    │   └── NotFound            no such route or resource
    ├── ConversationConflict    a turn continues a conversation from a turn not its latest
    ├── MethodNotAllowed        the route exists, the method does not
    ├── AuthenticationFailed    missing or wrong API key
    ├── ForbiddenOrigin         a web page from an untrusted origin sent the request
    ├── ForbiddenHost           a keyless server was reached under a foreign host name
    ├── PayloadTooLarge         a body, a file, or the number of files is over its limit
    ├── UnsupportedMediaType    a file whose bytes are of no supported kind
    ├── TurnTimedOut            the turn ran past its time budget
    ├── IdempotencyKeyReused    an Idempotency-Key sent again with another body
    ├── RetryLater              not now; come back after ``retry_after_s``
    │   ├── RateLimited         a key, an address or the server is over its limit
    │   ├── ServerShuttingDown  the server is draining before it stops
    │   ├── SessionBusy         the session runs another turn (``api.busy: reject``)
    │   │   └── LeaseLost       this process lost the session to another; nothing kept
    │   └── StorageUnavailable  the database or the workspace's files cannot be used now
    │       └── SchemaMismatch  the storage's schema is not the one this version needs
    ├── UpstreamFailed          the model provider could not be used
    ├── DeliveryFailed          an outbound channel could not deliver a message
    ├── ToolServerFailed        an MCP server could not be started, reached or kept
    ├── ConfigError             a configuration value is unusable (start-up only)
    └── StartupFailed           the server cannot start (a port in use, a workspace it
                                cannot write, a storage file it cannot read)

Errors carry a message meant for the client and, where one field is at fault, the
``param`` that names it. They carry no HTTP status: the HTTP adapter maps them.
"""

from __future__ import annotations


class NanobotError(Exception):
    """The root of every error nanobot-api raises on purpose."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, param={self.param!r})"


class InvalidRequest(NanobotError):
    """Raised when a request is malformed or asks for something the server does not offer."""


class NotFound(InvalidRequest):
    """Raised when a route or a named resource (a model id, a session) does not exist."""


class ConversationConflict(NanobotError):
    """Raised when a request continues a conversation from a response that is not its
    latest turn (the conversation went on since, or that response still runs)."""


class MethodNotAllowed(NanobotError):
    """Raised when a route exists but does not answer the request's method."""


class AuthenticationFailed(NanobotError):
    """Raised when an API key is required and the request's is missing or wrong."""


class ForbiddenOrigin(NanobotError):
    """Raised when a request carries an ``Origin`` that is neither the server's own nor
    a configured one: a web page the user visits must not drive the agent."""


class ForbiddenHost(NanobotError):
    """Raised when a server without a key is asked under a host name it does not
    answer to (a page reaching it by DNS rebinding would be)."""


class PayloadTooLarge(NanobotError):
    """Raised when a body, one file, or the count of files exceeds its configured limit."""


class UnsupportedMediaType(NanobotError):
    """Raised when a file's bytes are of no kind the server can hand to the agent."""


class RequestTimedOut(NanobotError):
    """Raised when a request's body stops arriving before it is whole."""


class TurnTimedOut(NanobotError):
    """Raised when a turn, including its wait for the session, exceeds its time budget."""


class UpstreamFailed(NanobotError):
    """Raised when the model provider refused, failed, timed out or broke off mid-answer."""


class IdempotencyKeyReused(InvalidRequest):
    """Raised when an Idempotency-Key already used by this API key comes with another body."""


class RetryLater(NanobotError):
    """Raised when a request is refused for now; ``retry_after_s`` says when to come back
    (the HTTP adapter sends it as ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after_s: float, param: str | None = None) -> None:
        super().__init__(message, param)
        self.retry_after_s = retry_after_s


class RateLimited(RetryLater):
    """Raised when a key's requests per minute or turns at once, the server's turns at
    once, or an address's failed keys are over their limit."""


class ServerShuttingDown(RetryLater):
    """Raised when a new turn arrives, or a running one outlives the grace period, while
    the server drains before stopping."""


class StartupFailed(NanobotError):
    """Raised when the server cannot start; the message names the cause and what to do."""


class ConfigError(NanobotError):
    """Raised when a configuration value is unusable; ``param`` is its key path."""


class DeliveryFailed(NanobotError):
    """Raised when an outbound channel could not deliver a message.

    ``retryable`` says whether the same message may get through later (a 429, a 5xx, a
    timeout, a lost connection) or never will (the platform refused it: a wrong chat id,
    a revoked token). ``retry_after_s`` is how long the platform asked to wait, if it
    said. ``progress`` is how many delivery steps (text parts, then files) reached the
    platform before the failure, so a retry resumes after them instead of repeating them.
    The message names the channel and what went wrong, never a credential.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        progress: int = 0,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.progress = progress


class SessionBusy(RetryLater):
    """Raised when a turn arrives for a session that is running (or queueing) another and
    the server is set to refuse rather than wait (``api.busy: "reject"``)."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class LeaseLost(SessionBusy):
    """Raised when a turn's process no longer holds its session's lease (it stalled past
    ``storage.leaseS`` and another process took the session over): the turn's commit is
    refused and nothing of it is kept."""


class StorageUnavailable(RetryLater):
    """Raised when durable state cannot be read or written right now: the database is
    down or unreachable, or the workspace's database file was deleted or replaced.
    Nothing was half written."""

    def __init__(self, message: str, *, retry_after_s: float = 5.0) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class SchemaMismatch(StorageUnavailable):
    """Raised when the storage's schema is not the one this version of nanobot-api
    migrated it to: a newer version migrated it (at start-up, or under a running
    server), or a migration this version needs is missing."""


class ToolServerFailed(NanobotError):
    """Raised when a tool server (an MCP server) could not be started or reached, or its
    connection broke during a call. The message says what happened in words a model or
    an operator can act on, never a configured secret. Never reaches a client as an
    error: a failed tool call becomes the call's result."""
