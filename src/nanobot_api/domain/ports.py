"""The roles the core relies on, as Protocols. Adapters implement them; fakes too.

Every method takes and returns domain values and raises only domain errors
(``nanobot_api.domain.errors``); cancellation arrives as the async library's
cancellation exception and must be let through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Protocol, runtime_checkable

from nanobot_api.domain.attachments import Document, ExtractedText, Image, Upload
from nanobot_api.domain.branches import MessageIds, StoredTurn
from nanobot_api.domain.conversation import History, Message, TurnRecord, Usage
from nanobot_api.domain.conversations import (
    ConversationItem,
    ConversationRecord,
    ConversationView,
    Metadata,
    Order,
    SessionSummary,
)
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.idempotency import KeyClaim, StoredAnswer
from nanobot_api.domain.models import (
    JsonObject,
    ModelRequest,
    ModelResponse,
    ToolCallPiece,
    ToolContext,
    ToolSpec,
)
from nanobot_api.domain.outbox import (
    Claim,
    DeliveryReceipt,
    OutboundMessage,
    OutboxEvent,
    OutboxStatus,
    OutboxTally,
)
from nanobot_api.domain.responses import ResponseRecord, ResponseRequest, ResponseStep
from nanobot_api.domain.sessions import Lease, SessionKey
from nanobot_api.domain.tenants import Tenant
from nanobot_api.domain.tools import ToolOutput
from nanobot_api.domain.turns import ChatRequest, PreparedTurn, Turn, TurnResult


class Reply(Protocol):
    """Where an agent writes its answer while it is being produced."""

    async def send(self, delta: str) -> None:
        """Streams ``delta`` to the caller now; the reply is all deltas joined."""

    def add_usage(self, usage: Usage) -> None:
        """Adds the tokens of one model call to the turn's total."""

    def remember(self, message: Message) -> None:
        """Records a message of this turn (a tool call, a tool result, the answer).

        An agent that records nothing gets one assistant message holding its whole
        reply. The messages are committed to history only if the turn completes.
        """


@runtime_checkable
class StreamsToolCalls(Protocol):
    """A Reply that also shows the client's tool calls while the model writes them."""

    async def send_call(self, piece: ToolCallPiece) -> None:
        """Streams a piece of one of the client's tool calls now; ``index`` counts the
        client's calls of this answer only. The calls the turn ends with may still hold
        a tail of their arguments not sent here (text held back while it could have
        been the start of a secret), and calls never sent in pieces at all."""


class Agent(Protocol):
    """Answers one turn of a session.

    Called at most once at a time per session, in arrival order. It may be cancelled
    at any await (client gone, time budget spent): it must then leave no state of its
    own behind that the next turn could see.
    """

    @property
    def model(self) -> str:
        """The model id clients see in /v1/models and may pin in requests."""

    async def respond(self, turn: Turn, reply: Reply) -> None:
        """Writes the answer to ``reply``; raises UpstreamFailed if its model failed."""


@runtime_checkable
class PlainCompletion(Protocol):
    """An agent that can also answer a conversation as one plain model call."""

    async def complete(self, messages: Sequence[Message], reply: Reply) -> None:
        """Answers exactly ``messages``: no system prompt, no history, no tools."""


@runtime_checkable
class ServesTools(Protocol):
    """An agent that runs tools of its own, whose names a client's tools may not take."""

    @property
    def server_tools(self) -> frozenset[str]:
        """The names of the tools the agent runs itself."""


class SessionStore(Protocol):
    """Durable per-session history.

    A session's turns form branches (``domain.branches``): each stored turn follows
    another or starts the conversation, and the turns of one branch are active; the
    rest are superseded, kept but never part of ``history``.
    """

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        """The active branch's turns, oldest first; empty for a new key.

        With ``max_messages``, only the most recent whole turns holding at most that
        many messages.

        Identity: once a bounded read of a session has been repeated (a store may
        decline to keep its first), every turn it handed out is handed out again as the
        same ``TurnRecord`` object by later reads with the same bound, and a turn committed since as
        the object given to ``commit``, while the session stays among the store's most
        recently used (``cached_sessions``, set by the
        composition root, one bound for every history cache). Callers may key caches
        on it (the request encoder does); they must stay correct without it, since a
        session pushed out of the cache comes back as new objects, at one full cost.
        """

    async def commit(
        self, key: SessionKey, record: TurnRecord, *, lease: Lease | None = None
    ) -> None:
        """Appends a turn to the active branch.

        Durable on return: a restart, even after kill -9, still sees it; all of its
        messages or none are ever seen. With ``lease`` (from the same store's
        SessionLeases), raises LeaseLost and writes nothing if another holder has taken
        the session since (fencing).
        """

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        """How many turns the active branch holds, and its latest (None if none)."""

    async def turns(self, key: SessionKey) -> tuple[StoredTurn, ...]:
        """Every turn the session holds, superseded ones included, by ascending ``no``."""

    async def commit_branch(
        self,
        key: SessionKey,
        kept: Sequence[int],
        imported: Sequence[TurnRecord],
        record: TurnRecord,
        ids: MessageIds,
        *,
        lease: Lease | None = None,
    ) -> None:
        """Makes the stored turns numbered ``kept`` (a branch, oldest first) the active
        ones, every other turn of the session superseded, and appends ``imported`` then
        ``record`` (which keeps ``ids``) after them as active turns; all in one
        transaction, durable on return (as ``commit``, fenced by ``lease`` as it)."""

    async def clear(self, key: SessionKey) -> int:
        """Forgets a session; returns how many turns it held, superseded ones included."""

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session that holds a turn, with its count of active turns."""

    async def forget_idle(self, key_prefix: str, idle_since: float) -> tuple[SessionKey, ...]:
        """Deletes every session whose key (``channel:id``) starts with ``key_prefix``
        and whose latest turn was stored before ``idle_since`` (a ``time.time()``);
        returns the sessions that went (so their uploads can go too), in key order."""


@runtime_checkable
class SessionLeases(Protocol):
    """One turn at a time per session across every process that shares the store, in
    the order the turns took their places in the session's queue."""

    async def acquire(self, key: SessionKey, *, wait: bool = True) -> Lease:
        """Takes a place in the session's queue and returns once this caller holds the
        session (its lease and a new fencing token). Without ``wait``, raises
        SessionBusy at once if another turn holds or awaits the session. Cancelled, the
        place is given up. A lease lasts the store's lease time unless renewed."""

    async def renew(self, lease: Lease) -> None:
        """Extends the lease; raises LeaseLost if another holder took the session."""

    async def release(self, lease: Lease) -> None:
        """Frees the session for the next turn in its queue. Idempotent."""


class Attachments(Protocol):
    """Turns uploads into what the agent receives: images, and documents as text."""

    async def accept(
        self, uploads: Sequence[Upload], session: SessionKey | None = None
    ) -> tuple[tuple[Image, ...], tuple[Document, ...]]:
        """Checks, stores and converts every upload, or raises PayloadTooLarge,
        UnsupportedMediaType or InvalidRequest naming the first file refused. The copies
        are kept as ``session``'s uploads (see SessionUploads)."""


class DocumentReader(Protocol):
    """Gets the text out of a document (PDF, Word, Excel, PowerPoint)."""

    async def read(self, kind: FileKind, data: bytes, name: str) -> ExtractedText:
        """The document's text, keeping the structure a reader needs (page, sheet and
        slide headings; table rows as tab-separated cells). Runs off the event loop and
        within bounded time and memory: over a bound the text is cut short and marked
        ``truncated``, or the file is refused.

        Raises PayloadTooLarge (a zip bomb, too many archive members), InvalidRequest
        (a corrupt, encrypted or unreadable file, naming ``name`` and why) or
        UnsupportedMediaType (a kind this reader does not read).
        """


class MediaStore(Protocol):
    """Keeps a copy of every accepted file."""

    async def save(
        self,
        data: bytes,
        kind: FileKind,
        original_name: str | None,
        session: SessionKey | None = None,
    ) -> str:
        """Stores ``data`` and returns the path of the copy.

        The copy gets a fresh, unguessable name with ``kind``'s extension; the client's
        ``original_name`` is kept only as metadata, never as part of a path, and so is the
        ``session`` it was uploaded in. The copy is complete when this returns, or
        absent: it never exists half written. A disk that refuses the write raises
        OSError (a server fault, not the client's). The copy is in use by its turn
        until released or discarded.
        """

    async def release(self, paths: Iterable[str]) -> None:
        """The turn that saved these copies committed: they stay, and may be removed
        once the store is over its size bound (oldest first, idle sessions' before
        those of sessions with a turn running)."""

    async def discard(self, paths: Iterable[str]) -> None:
        """The turn that saved these copies failed: they are removed."""


class SessionUploads(Protocol):
    """The files a session's clients uploaded, as the ``message`` tool may attach them."""

    async def find(self, session: SessionKey, name: str) -> str | None:
        """The path of a copy uploaded in ``session`` that ``name`` designates: its path
        or stored name as ``save`` returned it, or the name the client gave it (the
        latest such upload). None for anything else, a file of another session or any
        file outside the uploads included: nothing outside them is ever opened.
        """


class ForgetsUploads(Protocol):
    """Uploads that go with the sessions they were sent in, once those are forgotten."""

    async def forget_uploads(self, sessions: Collection[SessionKey], saved_before: float) -> int:
        """Removes every copy saved in one of ``sessions`` before ``saved_before`` (a
        ``time.time()``), with its metadata, wherever the store keeps them; never a copy
        a turn still running here uses (saved, not yet released or discarded). Returns
        how many copies went. A copy saved since (a new turn of a session forgotten
        meanwhile) stays with that turn."""

    async def sessions_with_uploads(
        self, key_prefix: str, saved_before: float
    ) -> tuple[SessionKey, ...]:
        """Every session whose key starts with ``key_prefix`` that has a copy saved
        before ``saved_before`` which ``forget_uploads`` would remove (on this machine
        or in the shared store), in key order: how a sweep finds uploads left by a
        session forgotten elsewhere, or by a turn that never committed."""


class ForgetsSessionRecords(Protocol):
    """What the Responses and Conversations APIs keep of a session beside its history
    (responses with their steps, the calls a paused turn waits for, a conversation
    record), forgotten with the session."""

    async def forget_records(self, sessions: Collection[SessionKey], made_before: float) -> int:
        """Deletes what this store keeps of ``sessions``: every response made before
        ``made_before`` (a ``time.time()``) with its steps, unless its run is still
        vouched for since (``domain.responses.forgettable``), the calls their paused
        turns wait for, and a conversation record made before then. Durable on return;
        returns how many responses and records went. A store without records of its
        own (a file never made) makes none."""

    async def sessions_with_records(
        self, key_prefix: str, made_before: float
    ) -> tuple[SessionKey, ...]:
        """Every session whose key starts with ``key_prefix`` of which ``forget_records``
        would delete something, in key order: how a sweep finds the records of sessions
        that hold no turn (a response that failed, a session forgotten elsewhere)."""


class UploadCopies(Protocol):
    """Uploads as files on this machine, wherever they were saved (with several
    replicas, the store keeps the bytes and each machine a working copy)."""

    async def local_copy(self, path: str) -> str | None:
        """A path on this machine holding the upload that ``path`` names (as ``save``
        returned it here or on another replica): this machine's working copy, fetched
        from the store first when there is none. None when the store keeps no such
        upload (never any file outside the uploads). Raises StorageUnavailable when the
        store cannot be reached."""


@runtime_checkable
class SettlesUploads(Protocol):
    """Attachments that keep a turn's files only if the turn is kept."""

    async def turn_ended(
        self, images: Sequence[Image], documents: Sequence[Document], *, kept: bool
    ) -> None:
        """Keeps (``kept``) or removes the stored copies of a turn's files."""


@runtime_checkable
class TracksRunningSessions(Protocol):
    """Uploads whose size bound spares the sessions that have a turn running."""

    def session_running(self, session: SessionKey) -> AbstractContextManager[None]:
        """While the block runs, ``session`` has a turn running (it may send one of its
        earlier uploads): over the bound, every idle session's uploads go before its."""


class AwaitedFiles(Protocol):
    """The files that accepted messages not yet delivered will send: the uploads bound
    (``api.maxMediaMb``) never removes them, so a message the server accepted keeps its
    attachment however long its channel is down."""

    async def awaited_files(self) -> frozenset[str]:
        """The names (last path parts) of the files that queued and pending outbox events
        name, whichever process stored them. Raises StorageUnavailable if the store
        cannot be read now."""


class ChatTurns(Protocol):
    """The chat use case as the HTTP adapter sees it."""

    @property
    def model(self) -> str:
        """The model id served."""

    async def prepare(self, request: ChatRequest) -> PreparedTurn:
        """Accepts a request or raises the domain error that refuses it; runs nothing."""

    async def run(self, turn: PreparedTurn, reply: Reply) -> TurnResult:
        """Runs the turn once its session is free, within the time budget.

        Raises TurnTimedOut or the agent's error. A turn that fails or is cancelled
        commits nothing to history.
        """


class ChatModel(Protocol):
    """A chat-completion model behind some provider."""

    async def complete(
        self,
        request: ModelRequest,
        on_delta: Callable[[str], Awaitable[None]],
        on_call: Callable[[ToolCallPiece], Awaitable[None]] | None = None,
    ) -> ModelResponse:
        """Asks the model once; awaits ``on_delta`` with each piece of answer text as it
        arrives (and ``on_call``, if given, with each piece of its tool calls, when the
        model streams them), then returns the whole assistant message (text and tool
        calls) and the tokens the provider reported for this call. The calls returned
        are the pieces joined, with the same ids.

        Raises UpstreamFailed when the provider refuses, fails, times out or breaks off
        (the message names the upstream status, never a credential). Transient refusals
        (429, 5xx) are retried only while the caller's deadline leaves time for it.
        """


class Tool(Protocol):
    """Something the model may call during a turn."""

    @property
    def spec(self) -> ToolSpec:
        """Its name, its description and the JSON schema of its arguments."""

    async def call(self, arguments: JsonObject, context: ToolContext) -> str | ToolOutput:
        """Does the work with arguments already checked against ``spec.parameters``
        (by a JSON Schema validator); returns the text (or text and images) the model
        reads as the result. A refusal the model should see is returned (or raised as a
        NanobotError, whose message it sees)."""


class ReadinessCheck(Protocol):
    """A part of the server that may be down while the API still serves (MCP servers)."""

    def readiness(self) -> dict[str, str]:
        """Each component this part names (``mcp.files``) and ``"ok"``, or a short
        reason it is not (never holding a configured secret). Cheap: read on every
        ``/health/ready``; never raises."""


class ToolServer(Protocol):
    """A live connection to a server of tools (an MCP server), opened by a
    ``ToolServerConnector`` and usable from any task until that closes it."""

    async def list_tools(self) -> tuple[ToolSpec, ...]:
        """Every tool the server offers, under its own (raw) name, with its description
        and input JSON Schema. Raises ToolServerFailed if the server cannot answer."""

    async def call_tool(self, name: str, arguments: JsonObject) -> ToolOutput:
        """Runs the tool; its result, bounded (the server's own errors as ``is_error``
        results). Raises ToolServerFailed when the connection is lost or broken, and
        lets cancellation (a timeout around it) through."""


class ToolServerConnector(Protocol):
    """Starts (a command) or reaches (a URL) one configured tool server."""

    def connect(self) -> AbstractAsyncContextManager[ToolServer]:
        """A connection, ready on entry, closed (its process stopped) on exit; entry and
        exit happen in the same task. Entry raises ToolServerFailed if the server cannot
        be started or reached, or does not complete the handshake."""


class OutboundChannel(Protocol):
    """A chat platform (or any receiver) the ``message`` tool can deliver to."""

    @property
    def name(self) -> str:
        """The channel's name, as the model writes it in ``message(channel=...)``."""

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Delivers ``message`` (its text split to fit the platform, then its files),
        starting after ``message.progress`` steps, within the channel's own timeout.

        Raises DeliveryFailed: ``retryable`` for a 429, a 5xx, a timeout or a lost
        connection (with the platform's Retry-After, if any), not for a refusal; its
        ``progress`` counts the steps that did get through. Its message never holds a
        credential.
        """


class Outbox(Protocol):
    """Durable outbound events, as the delivery side sees them."""

    async def enqueue(self, event: OutboxEvent) -> None:
        """Stores a new event. Durable on return (even against kill -9): delivery may be
        tried only after this returns."""

    async def claim_due(
        self, now: float, limit: int, exclude: Collection[str] = (), *, worker: str | None = None
    ) -> Claim:
        """Takes up to ``limit`` pending events due at ``now`` (oldest due first), leaving
        out the ids in ``exclude`` (those already being delivered) and those another
        worker (of any process) has claimed, and counts and records an attempt by
        ``worker`` on each (``domain.outbox.claimed``) and claims it, durably, before
        returning them. Also says when the next pending event not taken falls due (or
        its claim runs out).

        An event enqueued pending with its attempt already counted is claimed by the
        process that enqueued it (the ``message`` tool sends at once)."""

    async def settle(self, event: OutboxEvent) -> bool:
        """Writes the event's new state (status, attempts, progress, times, last error,
        the record of its attempts) and ends its claim; durable on return. False if the
        event is gone (dropped meanwhile)."""

    async def extend_claims(self, event_ids: Collection[str], now: float) -> None:
        """Keeps the claims of events still being delivered by this process for another
        claim period from ``now``. A claim not extended runs out, and the event is offered
        to any worker again (its process is taken to have died)."""


class OutboxAdmin(Protocol):
    """The outbox as an operator sees it."""

    async def events(self, status: OutboxStatus | None = None) -> tuple[OutboxEvent, ...]:
        """Every event (or those with ``status``), oldest first, each with the record of
        its last attempts."""

    async def event(self, event_id: str) -> OutboxEvent:
        """The event with ``event_id`` and the record of its last attempts; raises
        NotFound for an unknown id."""

    async def tally(self) -> OutboxTally:
        """How many events are in each state and when the oldest waiting one was
        created, counted by the store without reading the events (delivered ones
        accumulate): cheap enough for every metrics scrape."""

    async def retry(self, event_id: str, now: float, *, force: bool = False) -> OutboxEvent:
        """Makes the event pending and due now with a fresh budget of attempts, its past
        attempts still counted and their records kept (``domain.outbox.retried``);
        raises NotFound for an unknown id, InvalidRequest for a delivered event unless
        ``force``, RetryLater for a pending one that a worker is delivering right now
        (until its claim runs out), forced or not."""

    async def drop(self, event_id: str) -> OutboxEvent:
        """Deletes the event and returns it as it was; raises NotFound for an unknown id."""


class IdempotencyStore(Protocol):
    """Idempotency-Key records, durable, shared by every worker using the same storage."""

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: float, lease_s: float, ttl_s: float
    ) -> KeyClaim:
        """In one transaction: forgets records older than ``ttl_s``; then, with no record
        for (``scope``, ``key``), stores one held by the caller until ``now + lease_s``
        and returns Claimed; else ``decide``s (the stored answer, Running, or Claimed
        when the holder's lease ran out). Raises IdempotencyKeyReused for another body."""

    async def finish(self, scope: str, key: str, answer: StoredAnswer) -> None:
        """Keeps the answer of the claimed request; durable on return."""

    async def abandon(self, scope: str, key: str) -> None:
        """Forgets the claim of a request whose turn failed, so a retry runs again."""


@runtime_checkable
class IdempotencyLeases(Protocol):
    """Keeps alive the claim of a first request that is still running, so a claim whose
    holder died is taken over within one short lease rather than a whole turn budget."""

    async def renew(self, scope: str, key: str, until: float) -> None:
        """The unanswered claim on (``scope``, ``key``) now holds until ``until``;
        nothing if it was answered or forgotten meanwhile."""


class LimitCounters(Protocol):
    """Counts behind the rate limits, shared by every worker using the same storage."""

    async def add(self, bucket: str, window_start: float) -> int:
        """Counts one more event in ``bucket``'s window that began at ``window_start``
        and returns the window's count; earlier windows of the bucket are forgotten."""

    async def count(self, bucket: str, window_start: float) -> int:
        """The window's count so far, without adding to it."""

    async def take_slot(
        self, bucket: str, token: str, limit: int, *, now: float, lease_s: float
    ) -> bool:
        """Takes one of ``limit`` slots for ``token`` until ``now + lease_s`` (a holder
        that dies frees its slot then); False when all are taken. The holder of a slot
        renews it by taking it again (its own slot is not counted against it)."""

    async def free_slot(self, bucket: str, token: str) -> None:
        """Frees ``token``'s slot (nothing if it has none)."""


class Telemetry(Protocol):
    """Where the use cases report what operators count (metrics); never any text,
    session id or key."""

    def turn_started(self) -> None:
        """A turn began running."""

    def turn_ended(
        self, seconds: float, first_token_s: float | None, outcome: str, tokens: int
    ) -> None:
        """A turn ended: ``outcome`` is ``ok``, ``error`` or ``cancelled``; ``tokens``
        is what its model calls used, prompt and completion together."""

    def session_waited(self, seconds: float) -> None:
        """A turn waited this long for its session's previous turn."""

    def model_called(self, status: str, seconds: float) -> None:
        """One model call ended: ``status`` is ``ok`` or the kind of its failure."""

    def upload_accepted(self, kind: str) -> None:
        """A file of the detected ``kind`` was accepted."""

    def span(self, name: str) -> AbstractContextManager[None]:
        """A trace span around a step (a turn, a model call, a tool step, a commit, a
        delivery), when tracing is on."""


class ServerHealth(Protocol):
    """What the health routes report about the running server."""

    @property
    def draining(self) -> bool:
        """Whether the server is draining before it stops (no new turns)."""

    async def readiness(self) -> dict[str, str]:
        """Each dependency (``storage``, ...) -> ``"ok"`` or why it is not; the server
        is ready when all are ``"ok"`` and it is not draining. Never raises."""

    def degraded(self) -> dict[str, str]:
        """Parts that are down while the server still serves (an MCP server that did
        not start) -> why. They make readiness ``degraded``, still 200: a load balancer
        keeps the replica. Never raises."""


class ResponseStore(Protocol):
    """Responses kept for later reading (``store``), and for a background one, its steps."""

    async def put(self, record: ResponseRecord) -> None:
        """Stores ``record`` in place of any earlier state of the same id; durable on
        return. A cancellation asked for meanwhile (``request_cancel``) stays asked."""

    async def get(self, response_id: str) -> ResponseRecord | None:
        """The response as last put (with ``cancel_requested`` if asked); None if unknown
        or deleted."""

    async def delete(self, response_id: str) -> bool:
        """Forgets the response and its steps; False if there was none."""

    async def request_cancel(self, response_id: str) -> ResponseRecord | None:
        """Marks a running response to be cancelled by whichever process runs it;
        returns the record (None if unknown). A finished one is left as it is."""

    async def latest(self, session: SessionKey) -> ResponseRecord | None:
        """The session's most recently created response, if any."""


class ResponseLog(Protocol):
    """The steps of a background response, in order, readable from any process."""

    async def append(self, response_id: str, first: int, steps: Sequence[ResponseStep]) -> None:
        """Stores ``steps`` numbered from ``first`` (the count already stored); durable
        on return. Numbers are never reused: a step already stored under one is kept."""

    async def read(self, response_id: str, after: int = -1) -> tuple[ResponseStep, ...]:
        """The steps numbered above ``after``, in order (all of them for -1)."""


class RunLiveness(Protocol):
    """Whether the process running a background response still runs it, as every
    process sharing the store can tell (``ResponseRecord.alive_until``)."""

    async def keep_alive(self, response_id: str, until: float) -> None:
        """The running process vouches for the response until ``until``; nothing for
        one that ended."""

    async def interrupt(self, record: ResponseRecord, now: float) -> bool:
        """Stores ``record`` (the ended form of a running response) in place of the
        stored one only if that one still runs and nobody vouched for it at ``now``;
        returns whether it did. Durable on return."""


class PausedCalls(Protocol):
    """Which session's paused turn waits for which client tool calls, readable from any
    process: a client that resends its whole conversation names no session."""

    async def note(self, session: SessionKey, call_ids: Sequence[str]) -> None:
        """The session's paused turn now waits for ``call_ids`` (none: it waits for
        nothing), in place of what it waited for before; durable on return."""

    async def find(self, call_ids: Sequence[str], channel: str) -> SessionKey | None:
        """The session of ``channel`` that most recently paused on one of ``call_ids``;
        None if none did."""


class ConversationStore(Protocol):
    """What a conversation adds to its session: creation time and metadata."""

    async def put(self, record: ConversationRecord) -> None:
        """Stores or replaces the session's conversation record; durable on return."""

    async def get(self, session: SessionKey) -> ConversationRecord | None:
        """The record, or None when the session never had one."""

    async def delete(self, session: SessionKey) -> bool:
        """Forgets the record; False if there was none."""

    async def records(self, channel: str) -> tuple[ConversationRecord, ...]:
        """Every record of sessions in ``channel``."""


class SessionCatalog(Protocol):
    """The sessions of a channel, for listings."""

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        """Every session of ``channel`` that holds a turn, most recently changed first."""


class ResponseRun(Protocol):
    """A response once accepted: how it began, and how it stands now."""

    first: ResponseRecord
    record: ResponseRecord
    failure: BaseException | None
    documents: tuple[Document, ...]
    """The documents its turn was given (``truncated`` ones were cut to their bound)."""

    async def finished(self) -> ResponseRecord:
        """The record once the response has ended."""


class TurnHold(Protocol):
    """What a request holds for its turn while it runs (a place under the limits on
    turns at once)."""

    def keep(self) -> Callable[[], Awaitable[None]]:
        """Hands it to a turn that outlives its request (a background response): the
        request's end no longer lets it go; the returned function does, when the turn
        ends (a second call does nothing)."""


class ResponseTurns(Protocol):
    """The Responses use case as the HTTP adapter sees it.

    ``channel`` is the caller's session channel: a response of another channel is
    answered as unknown (NotFound), never shown.
    """

    @property
    def model(self) -> str:
        """The model id served."""

    async def create(
        self, request: ResponseRequest, channel: str, hold: TurnHold | None = None
    ) -> ResponseRun:
        """Accepts and starts a response, or raises the error refusing it (a stale
        ``previous_response_id`` is ConversationConflict). A foreground, unstreamed one
        has ended on return; any other runs on. A background one takes the request's
        ``hold`` along until its turn ends."""

    def follow(
        self, run: ResponseRun | str, channel: str, idle_s: float = 0
    ) -> AsyncIterator[ResponseStep | None]:
        """Every step of the response from its first, then the live ones until its end
        (from any process); None after ``idle_s`` of silence (0: never)."""

    def abandon(self, run: ResponseRun) -> None:
        """The client of a streamed foreground response left: its turn is cancelled."""

    async def retrieve(self, response_id: str, channel: str) -> ResponseRecord:
        """The response as it stands; NotFound if unknown or deleted."""

    async def cancel(self, response_id: str, channel: str) -> ResponseRecord:
        """Cancels a background response wherever it runs; returns it as it ended."""

    async def delete(self, response_id: str, channel: str) -> None:
        """Forgets the stored response (its conversation keeps the turn)."""


class Conversations(Protocol):
    """The Conversations use case as the HTTP adapter sees it."""

    async def create(
        self, channel: str, metadata: Metadata, items: Sequence[Message] = ()
    ) -> ConversationRecord:
        """A new conversation holding ``items``; InvalidRequest for items it cannot hold."""

    async def get(self, session: SessionKey) -> ConversationView:
        """The conversation; NotFound for a session with neither record nor turns."""

    async def update(self, session: SessionKey, metadata: Metadata) -> ConversationRecord:
        """Replaces its metadata."""

    async def delete(self, session: SessionKey) -> None:
        """Forgets the conversation and its history."""

    async def items(
        self, session: SessionKey, *, after: str | None, limit: int, order: Order
    ) -> tuple[tuple[ConversationItem, ...], bool]:
        """A page of its history as items, and whether more follow."""

    async def listing(
        self, channel: str, *, after: str | None, limit: int
    ) -> tuple[tuple[ConversationView, ...], bool]:
        """A page of the channel's conversations, most recently changed first."""


class RequestLimiter(Protocol):
    """The rate limits as the HTTP side applies them; each refusal is RateLimited."""

    @property
    def limits_turns(self) -> bool:
        """Whether any limit on turns at once is set (else ``turn_slot`` is not needed)."""

    async def check_address(self, address: str) -> None:
        """Refuses an address over its failed keys this minute, before keys are compared."""

    async def auth_failed(self, address: str) -> None:
        """Counts one failed key from ``address``."""

    async def count_request(self, tenant: Tenant) -> None:
        """Counts a request of ``tenant``; refuses it over the key's requests per minute."""

    def turn_slot(self, tenant: Tenant) -> AbstractAsyncContextManager[None]:
        """Holds a turn's place under the key's and the server's turns at once while the
        block runs; refuses at once when either is full."""
