"""The embedding API: ``open_state``, the :class:`State` it yields, and :class:`Session` handles."""

from __future__ import annotations

import inspect
import os
import re
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio.lowlevel

from .backend import parking_for_current_backend
from .clock import Clock
from .config import Config
from .errors import DatabaseRefused, InvalidInput
from .locations import is_postgres_url
from .model.listing import ListingKey, SessionPage, decode_cursor, encode_cursor
from .model.messages import (
    AddContext,
    EndSession,
    GetContext,
    Increment,
    Keyed,
    Message,
    RecordAction,
    SetPreference,
    Update,
)
from .model.session_state import check_key, check_max_turns, check_text, checked_copy, iso_time
from .runtime.supervisor import FaultHook, Supervisor, open_supervisor
from .store.threaded import open_sqlite_store

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import AsyncIterator, Callable

    from .backend import Envelope, Parking
    from .runtime.events import SessionEvent
    from .runtime.histogram import HistogramSnapshot
    from .store.interface import Store


__all__ = [
    "DEFAULT_CLIENT_ID",
    "END_SESSION",
    "Durability",
    "Session",
    "State",
    "add_context_message",
    "canonical_session_id",
    "context_message",
    "increment_message",
    "open_runtime",
    "open_state",
    "record_action_message",
    "send",
    "send_now",
    "set_preference_message",
]

T = TypeVar("T")
R = TypeVar("R")
# Distinct increment messages remembered per state (the common ones: a few keys and steps).
_MESSAGE_CACHE_SIZE = 1024
_GET_CONTEXT = {turns: GetContext(turns) for turns in range(1, 101)}
END_SESSION = EndSession()
Durability = Literal["commit", "interval", "memory"]
DEFAULT_CLIENT_ID = "anonymous"
_DURABILITIES = ("commit", "interval", "memory")
_QUOTED_ID_CHARS = 60


@asynccontextmanager
async def open_state(
    path: str | PathLike[str] | Store | None = None,
    *,
    durability: Durability = "commit",
    config: Config | None = None,
    fault_hook: FaultHook | None = None,
    connect: Callable[..., sqlite3.Connection] | None = None,
    stop_on_signals: bool = False,
    clock: Clock | None = None,
    node_id: str | None = None,
) -> AsyncIterator[State]:
    """Open session state for the duration of the ``async with`` block.

    Args:
        path: the SQLite database to keep sessions in, a PostgreSQL
            database's ``postgresql://`` URL (this process becomes one node
            sharing it, with leases of ``config.lease_duration``; needs
            ``actorstate[postgres]``), a :class:`Store` already open (it
            stays open after the block: its opener closes it), or ``None``
            to keep them in memory only (lost when the block exits).
        durability: ``"commit"``, ``"interval"`` or ``"memory"``; see the
            README. Without a path every mode behaves as ``"memory"``.
        config: limits and timings; ``Config()`` when omitted.
        fault_hook: called before every turn; an exception it raises kills
            that actor's loop. For fault injection and turn logs.
        connect: replaces ``sqlite3.connect`` (fault injection: a connection
            that fails on demand).
        stop_on_signals: on SIGTERM or SIGINT, cancel the ``async with``
            block, which then exits like any other exit (main thread only).
        clock: where time is read and waited for (restarts, idle
            passivation, expiry, interval flushes); a :class:`ManualClock`
            lets tests step through them. The system's clocks by default.
        node_id: with a ``postgresql://`` URL, this node's name in the
            session rows it owns (default: host, process id and a random
            suffix). A node restarted under the same name takes its
            sessions back at once instead of waiting out its old leases.

    This is where the parts are put together: the backend's parking, the
    clock, the store and the runtime on top of them.

    Opening a database reads no session: each is loaded when first called.
    On exit, new calls are refused, every call already made gets its turn,
    everything unsaved is committed, and the database is closed.

    Error handling:
        InvalidInput: an unknown durability mode.
        DatabaseRefused: the file is not an SQLite database, is another
            application's or corrupt, or was written by a newer version (a
            PostgreSQL database: holds another application's tables, has a
            newer schema, does not exist, refuses the credentials, or
            psycopg is not installed).
        StoreUnavailable: the database cannot be opened (or reached) now.
    """
    async with open_runtime(
        path,
        durability=durability,
        config=config,
        fault_hook=fault_hook,
        connect=connect,
        stop_on_signals=stop_on_signals,
        clock=clock,
        node_id=node_id,
    ) as supervisor:
        yield State(supervisor)


@asynccontextmanager
async def open_runtime(
    path: str | PathLike[str] | Store | None = None,
    *,
    durability: Durability = "commit",
    config: Config | None = None,
    fault_hook: FaultHook | None = None,
    connect: Callable[..., sqlite3.Connection] | None = None,
    stop_on_signals: bool = False,
    clock: Clock | None = None,
    node_id: str | None = None,
) -> AsyncIterator[Supervisor]:
    """What :func:`open_state` opens, without the :class:`State` around it.

    The seam that tests and tools use to watch and drive the runtime
    (``State(supervisor)`` gives the public API on top of it). Its objects'
    public methods are internal: they change when the runtime does.
    Arguments and errors are :func:`open_state`'s.
    """
    if durability not in _DURABILITIES:
        raise InvalidInput(f"durability must be one of {', '.join(_DURABILITIES)}, not {durability!r}")
    config = config or Config()
    if node_id is not None and not (isinstance(path, str) and is_postgres_url(path)):
        raise InvalidInput("node_id names a node sharing a postgresql:// database; give such a URL")
    parking = parking_for_current_backend()
    clock = clock or Clock()
    async with AsyncExitStack() as stack:
        store: Store | None = None
        if path is not None and durability != "memory":
            if isinstance(path, str | PathLike):
                location = os.fspath(path)
                if is_postgres_url(location):
                    store = await _open_postgres(location, parking, config, node_id)
                else:
                    store = await open_sqlite_store(
                        location, parking, busy_timeout=config.busy_timeout, connect=connect
                    )
                # Closed after the runtime below has flushed everything into it,
                # even when the block was cancelled (as the runtime's close is).
                stack.push_async_callback(_close_shielded, store)
            else:
                store = path
        supervisor = await stack.enter_async_context(
            open_supervisor(
                config,
                parking,
                store=store,
                hold_replies=durability == "commit",
                fault_hook=fault_hook,
                stop_on_signals=stop_on_signals,
                clock=clock,
            )
        )
        yield supervisor


async def _open_postgres(url: str, parking: Parking, config: Config, node_id: str | None) -> Store:
    """The PostgreSQL store at ``url``, as a node of its own; psycopg is imported only here."""
    try:
        from .store.postgres import open_postgres_store
    except ImportError as error:
        raise DatabaseRefused(
            f"a postgresql:// database needs psycopg, which is not installed ({error}): "
            "pip install 'actorstate[postgres]'"
        ) from None
    return await open_postgres_store(url, parking, node_id=node_id, lease_duration=config.lease_duration)


async def _close_shielded(store: Store) -> None:
    with anyio.CancelScope(shield=True):
        await store.close()


class State:
    """All sessions of one :func:`open_state`. Safe to share between tasks."""

    __slots__ = ("_supervisor",)

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    @property
    def config(self) -> Config:
        return self._supervisor.config

    async def create_session(self, client_id: str = DEFAULT_CLIENT_ID) -> Session:
        """Create a session owned by ``client_id`` and return its handle."""
        client_id = _check_client_id(client_id, self.config)
        session_id = await self._supervisor.create(client_id)
        return Session(self._supervisor, session_id, client_id)

    def session(self, session_id: str, client_id: str = DEFAULT_CLIENT_ID) -> Session:
        """A handle on an existing session; no I/O, nothing is checked yet.

        Error handling:
            InvalidInput: ``session_id`` is not a UUID.
        """
        return Session(
            self._supervisor, canonical_session_id(session_id), _check_client_id(client_id, self.config)
        )

    def session_as_owner(self, session_id: str) -> Session:
        """A handle that acts for whichever client owns the session.

        For transports where the process itself is the principal (stdio: one
        client owns the whole process). Never give one to a caller whose
        identity was not established; use :meth:`session` for those.
        """
        return Session(self._supervisor, canonical_session_id(session_id), None)

    async def list_sessions(self, client_id: str = DEFAULT_CLIENT_ID) -> list[str]:
        """Ids of all of ``client_id``'s live sessions, oldest first (resident, passivated or stored).

        Read page by page (``Config.max_list_page_size`` at a time), so other
        calls go on between pages however many sessions the client has; the
        list itself is as long as they are. :meth:`describe_sessions` reads one page.
        """
        client_id = _check_client_id(client_id, self.config)
        ids: list[str] = []
        after: ListingKey | None = None
        while True:
            rows, after = await self._supervisor.list_sessions(
                client_id, after, self.config.max_list_page_size
            )
            ids.extend(session_id for session_id, _, _ in rows)
            if after is None:
                return ids
            await anyio.lowlevel.checkpoint()  # memory mode reads pages without awaiting

    async def describe_sessions(
        self, client_id: str = DEFAULT_CLIENT_ID, *, cursor: str | None = None, limit: int | None = None
    ) -> SessionPage:
        """One page of ``client_id``'s live sessions with their creation and last-activity times.

        Args:
            cursor: where to go on: the ``next_cursor`` of the page before; None for the first page.
            limit: sessions per page, 1 to ``Config.max_list_page_size``
                (default ``Config.list_page_size``).

        Error handling:
            InvalidInput: a cursor no listing gave out, or a limit out of range.
        """
        config = self.config
        client_id = _check_client_id(client_id, config)
        if limit is None:
            limit = config.list_page_size
        elif type(limit) is not int or not 1 <= limit <= config.max_list_page_size:
            raise InvalidInput(
                f"limit must be an integer from 1 to {config.max_list_page_size}, not {_shown(limit)}"
            )
        after = None if cursor is None else decode_cursor(cursor)
        rows, next_key = await self._supervisor.list_sessions(client_id, after, limit)
        return SessionPage(
            [
                {"sessionId": session_id, "createdAt": iso_time(created), "lastActivity": iso_time(last)}
                for session_id, created, last in rows
            ],
            None if next_key is None else encode_cursor(next_key),
        )

    async def housekeeping(self) -> None:
        """Run a housekeeping pass now and wait for it (it also runs every
        ``Config.housekeeping_interval``): with a database, sessions idle past
        ``session_ttl`` end, ended ones past ``ended_retention`` are purged, the
        WAL is checkpointed, and the live sessions are counted for :meth:`stats`.
        A pass already running is waited for first. Without a database it does nothing."""
        await self._supervisor.housekeeping()

    def residence(self, session_id: str) -> str | None:
        """Where a session is in this process now, for operators and tests; no I/O.

        ``"ready"`` (in memory, serving), ``"loading"``, ``"backoff"`` (crashed,
        waiting for its restart), ``"quarantined"``, ``"ended"`` (its end not
        committed yet), ``"passivated"`` (kept encoded in memory), or ``None``:
        not in memory (stored only, or no such session). Any client's session.
        """
        return self._supervisor.residence(str(session_id).lower())

    def add_session_listener(self, listener: Callable[[SessionEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` whenever a session is created, passivated, evicted, expired,
        restarted or quarantined, from now until the returned function is called.

        ``listener`` runs inside the runtime's step: it must only note the
        event (queue it) and return, never await or block. One that raises is
        logged and changes nothing else. A session that expires in the
        database without having been in memory since is not reported.
        """
        return self._supervisor.add_session_listener(listener)

    def stats(self) -> dict[str, Any]:
        """Counters: resident actors, sessions, activations, passivations,
        evictions by reason, expired sessions, restarts, quarantined sessions,
        mailbox high-water mark, accounted bytes and process RSS."""
        return self._supervisor.stats()

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """The histograms, for metrics exporters: ``turn_seconds`` (each turn that completed),
        and with a database ``commit_seconds`` (each committed transaction's duration) and
        ``commit_batch_sessions`` (sessions it wrote)."""
        return self._supervisor.histograms()

    async def probe_store(self) -> int | None:
        """A readiness probe: ask the database a cheap question (its size in bytes) through its
        worker, behind whatever is queued there. None without a database.

        Error handling:
            StateClosed: the state is closed.
            StoreError: the database did not answer; the error says why.
        """
        return await self._supervisor.probe_store()


class Session:
    """A handle on one session, bound to the client that owns it.

    Every method is a message to the session's actor; the reply comes after
    the actor's turn. A handle with another client's id gets
    :class:`SessionNotFound`, exactly like an unknown id.
    """

    __slots__ = ("_supervisor", "client_id", "id")

    def __init__(self, supervisor: Supervisor, session_id: str, client_id: str | None) -> None:
        self._supervisor = supervisor
        self.id = session_id
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, client_id={self.client_id!r})"

    # Every write takes an optional idempotency key, ``request_id``: the first
    # call with a key applies, a retry of the same call with it returns the
    # first outcome and changes nothing (across restarts: keys are committed
    # with the session), and the key on a different call is refused with
    # InvalidInput. A session remembers its last Config.max_request_ids keys.
    #
    # Each method asks the supervisor itself, as send() does: through send()
    # a call cost one more coroutine, 0.3 µs of its 5.5 (memory mode, measured).

    async def add_context(self, key: str, value: Any, *, request_id: str | None = None) -> int:
        """Set ``metadata[key] = value`` and record a ``context`` event; return total events."""
        return await self._supervisor.ask(
            self.id, self.client_id, add_context_message(self, key, value, request_id=request_id)
        )

    async def record_action(
        self, action: str, details: str | None = None, *, request_id: str | None = None
    ) -> int:
        """Record an ``action`` event; return total events."""
        return await self._supervisor.ask(
            self.id, self.client_id, record_action_message(self, action, details, request_id=request_id)
        )

    async def set_preference(self, key: str, value: Any, *, request_id: str | None = None) -> dict[str, Any]:
        """Set ``metadata[key] = value``; return a copy of the metadata (a retry: the metadata now)."""
        return await self._supervisor.ask(
            self.id, self.client_id, set_preference_message(self, key, value, request_id=request_id)
        )

    async def increment(self, key: str = "counter", by: int = 1, *, request_id: str | None = None) -> int:
        """Add ``by`` to the integer counter ``metadata[key]``; return its new value."""
        return await self._supervisor.ask(
            self.id, self.client_id, increment_message(self, key, by, request_id=request_id)
        )

    async def update(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """Run ``fn(metadata)`` inside the session's turn, atomically.

        ``fn`` gets a private copy of the metadata, may change it in place, and
        must not await. If it returns, the changed copy becomes the session's
        metadata and its return value is returned; if it raises, nothing
        changes and the exception propagates to this caller only: the actor
        and every other caller go on. ``KeyboardInterrupt``, ``SystemExit``
        and any other ``BaseException`` reach this caller as they are (as if
        ``fn`` had run in the caller's own task); a cancellation exception,
        ``GeneratorExit`` or ``StopIteration`` raised by ``fn`` arrives as
        ``RuntimeError`` naming it, since the caller was not cancelled.

        Error handling:
            InvalidInput: ``fn`` is not callable, is an ``async`` function, or
                returned an awaitable (a turn cannot await; nothing changes).
        """
        if not callable(fn):
            raise InvalidInput(f"update needs a callable, not {_shown(fn)}")
        if inspect.iscoroutinefunction(fn):
            raise InvalidInput(
                f"update needs a plain function, not the async function {_shown(fn)}: a turn cannot "
                "await. Do the awaiting before the call and pass a function that only changes the metadata."
            )
        return await self._supervisor.ask(self.id, self.client_id, Update(fn))

    async def context(self, max_turns: int | None = None) -> dict[str, Any]:
        """``{"sessionId", "totalEvents", "metadata", "recentEvents"}`` with the last ``max_turns`` events."""
        return await self._supervisor.ask(self.id, self.client_id, context_message(self, max_turns))

    async def end(self) -> None:
        """End the session; later calls get :class:`SessionNotFound`."""
        await self._supervisor.ask(self.id, self.client_id, END_SESSION)


# -- the messages behind Session's methods, for a transport that sends them itself --
#
# Each checks its arguments as its method does (InvalidInput) and builds the
# message; send() is then the method, and send_now() answers without
# awaiting when it can (a transport answering from its reader).


def add_context_message(
    session: Session, key: str, value: Any, *, request_id: str | None = None
) -> Message[int]:
    config = session._supervisor.config
    check_key(key, config)
    # A private copy: the caller keeps its object, the session keeps its state.
    value, size = checked_copy(value, config)
    return _keyed(AddContext(key, value, size), request_id, config)


def record_action_message(
    session: Session, action: str, details: str | None = None, *, request_id: str | None = None
) -> Message[int]:
    config = session._supervisor.config
    check_text(action, config, "action")
    details = "" if details is None else check_text(details, config, "details")
    return _keyed(RecordAction(action, details), request_id, config)


def set_preference_message(
    session: Session, key: str, value: Any, *, request_id: str | None = None
) -> Message[dict[str, Any]]:
    config = session._supervisor.config
    check_key(key, config)
    value, size = checked_copy(value, config)
    return _keyed(SetPreference(key, value, size), request_id, config)


def increment_message(
    session: Session, key: str = "counter", by: int = 1, *, request_id: str | None = None
) -> Message[int]:
    supervisor = session._supervisor
    # Messages are immutable, so the common ones are built (and checked) once.
    message = supervisor.increments.get((key, by)) if type(key) is str and type(by) is int else None
    if message is None:
        check_key(key, supervisor.config)
        if type(by) is not int:
            raise InvalidInput(f"by must be an integer, not {by!r}")
        message = Increment(key, by)
        if len(supervisor.increments) < _MESSAGE_CACHE_SIZE:
            supervisor.increments[key, by] = message
    if request_id is not None:
        return _keyed(message, request_id, supervisor.config)
    return message


def context_message(session: Session, max_turns: int | None = None) -> Message[dict[str, Any]]:
    config = session._supervisor.config
    turns = config.default_max_turns if max_turns is None else check_max_turns(max_turns, config)
    return _GET_CONTEXT.get(turns) or GetContext(turns)


async def send(session: Session, message: Message[R]) -> R:
    """Send ``message`` (made by one of the functions above) to the session; its reply."""
    return await session._supervisor.ask(session.id, session.client_id, message)


def send_now(session: Session, message: Message[R]) -> Envelope[R] | None:
    """Run ``message``'s turn now, without awaiting, if nothing stands in its way; else None
    (nothing was done: :func:`send` it). See ``Supervisor.try_now``: the envelope is
    resolved, or held for its commit (set its ``settled`` to hear when it is over)."""
    return session._supervisor.try_now(session.id, session.client_id, message)


def _keyed(message: Message[T], request_id: str | None, config: Config) -> Message[T]:
    """``message`` under the idempotency key ``request_id`` (unkeyed when it is None)."""
    if request_id is None:
        return message
    if type(request_id) is not str or not 1 <= len(request_id) <= config.max_request_id_length:
        raise InvalidInput(
            f"request_id must be a string of 1 to {config.max_request_id_length} characters, "
            f"not {_shown(request_id)}"
        )
    return Keyed.of(request_id, message)


# The form every id is answered in (lower case, hyphens): checked first,
# because almost every id a client sends back is one it was given.
_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


# The id last returned by canonical_session_id. The tools check a sessionId
# with it (their schemas' uuid format) and then make the handle from the very
# string it returned: the second time costs an identity test, not the pattern
# (a third of a microsecond). Holding the string keeps its identity from
# passing to another object.
_last_canonical_id: str | None = None  # not "": the empty string is interned, and no UUID


def canonical_session_id(session_id: object) -> str:
    """The id in the form every reply uses; InvalidInput if it is not a UUID.

    Session handles are made with it; the tools check their ``sessionId``
    argument's ``uuid`` format with it too.
    """
    global _last_canonical_id
    if session_id is _last_canonical_id and type(session_id) is str:
        return session_id  # the argument, not the global another thread may have changed meanwhile
    if type(session_id) is str and _CANONICAL_ID.match(session_id):
        _last_canonical_id = session_id  # already what str(uuid.UUID(...)) gives
        return session_id
    try:
        canonical = _last_canonical_id = str(uuid.UUID(session_id))  # type: ignore[arg-type]
        return canonical
    except (TypeError, ValueError, AttributeError):
        # Ids come from callers: quoted cut short, never echoed whole.
        shown = repr(session_id)
        if len(shown) > _QUOTED_ID_CHARS:
            shown = shown[: _QUOTED_ID_CHARS - 3] + "..."
        raise InvalidInput(f"session id must be a UUID, not {shown}") from None


def _shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: error texts must not echo big inputs."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_client_id(client_id: object, config: Config) -> str:
    return check_key(client_id, config, "client id")
