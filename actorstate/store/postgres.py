"""The PostgreSQL store: one row per session, one owner node per session, fenced in the row itself.

Everything here is synchronous and runs on the store's
:class:`~.worker.DatabaseThread` (psycopg 3's synchronous connection: its
async one and asyncpg need asyncio, and actorstate runs on trio too).
``psycopg`` errors are translated at this boundary: what must not be used
raises :class:`DatabaseRefused`, what may pass raises
:class:`StoreUnavailable`, and a session held by another node's live lease
raises :class:`SessionMoved`.

Schema (``actorstate_schema`` holds its version; see ``_MIGRATIONS``)::

    actorstate_sessions(id, client_id, version, state, created_at,
                        last_activity, ended_at,
                        owner_node, owner_epoch, lease_expires)

**Owners.** Several nodes (processes, machines) share one database; each
session has at most one owner at a time. :meth:`PostgresStore.load` *claims*
the session in one UPDATE that bumps ``owner_epoch`` and takes the lease
when the session is unowned, already this node's, or its lease expired by
the database's clock (``now()``, never a node's); otherwise it raises
:class:`SessionMoved` naming the owner. Every write matches ``id``,
``owner_epoch`` and ``version``: a node whose session was claimed by another
(it paused or was cut off past its lease) is answered ``FENCED`` by the
database itself and keeps nothing, however late its write arrives. This is
Temporal's range id and Orleans' ETag, with no coordinator of our own. A
committed write renews the session's lease; resident sessions that are only
read are renewed in batches (see :mod:`.postgres_leases`).

**Group commit.** One batch is one statement (an INSERT and an UPDATE
over ``unnest`` of the batch's arrays, in one WITH), sent on the
autocommit connection, so that it is a transaction of its own, committed
in the same round trip; it is answered only after that commit. Only when
some write did not apply does a second statement read those rows to tell
``FENCED`` from ``CONFLICT``.

A lost connection is opened again at the next call; the call that found it
lost raises :class:`StoreUnavailable`. A COMMIT whose answer was lost with
the connection may or may not have committed (as with any database): the
runtime reloads those sessions, so it replies with what the database holds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict

from ..errors import DatabaseRefused, SessionMoved, StoreUnavailable
from ..fault_seam import FaultSeam, process_seam
from ..locations import shown_location
from ..planted import active
from .interface import ExpiryStep, SnapshotWrite, StoredSession, WriteOutcome
from .postgres_leases import LeaseBook
from .threaded import ThreadedStore
from .worker import DatabaseThread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from ..backend import Parking

__all__ = [
    "DEFAULT_LEASE_DURATION",
    "SCHEMA_VERSION",
    "PostgresStore",
    "default_node_id",
    "open_postgres_store",
    "refuses_actorstate",
]

SCHEMA_VERSION = 1
DEFAULT_LEASE_DURATION = 30.0
_COMMITTED, _CONFLICT, _FENCED = WriteOutcome.COMMITTED, WriteOutcome.CONFLICT, WriteOutcome.FENCED
_SCHEMA_TABLE = "actorstate_schema"
_OUR_TABLES = (_SCHEMA_TABLE, "actorstate_sessions")
# Held while a store checks and migrates the schema, so that two nodes
# opening one new database at once do not both create it.
_SCHEMA_LOCK = 0x61637374  # "acst"
# SQLSTATE classes that retrying cannot mend: the database named does not
# exist, the credentials are refused, the server refuses this client.
_REFUSING_SQLSTATES = ("3D000", "28000", "28P01", "42501")
# A failed connection attempt carries no SQLSTATE (psycopg gathers the
# attempts' messages into one), so the server's words are looked for too.
_REFUSING_MESSAGES = (
    "does not exist",  # the database, or the role
    "password authentication failed",
    "no pg_hba.conf entry",
    "authentication failed",
)

_CONNECTION_DEFAULTS = {
    "application_name": "actorstate",
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds unacknowledged before the connection counts as lost
}

# Statements that change several rows lock them first, in id order: two
# nodes changing the same rows (an old owner and a new one, or renewals and
# writes) would otherwise lock them in whatever order each plan visits them,
# and deadlock. The statement's own changes touch only rows locked here.
_LOCKED_IN_ID_ORDER = (
    "WITH locked AS MATERIALIZED (SELECT id FROM actorstate_sessions "
    "WHERE id = ANY(%s::text[]) ORDER BY id FOR UPDATE) "
)

# Each entry upgrades the schema from its index to index + 1.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE actorstate_schema (version integer NOT NULL);
    INSERT INTO actorstate_schema VALUES (0);
    CREATE TABLE actorstate_sessions (
        id text COLLATE "C" PRIMARY KEY,
        client_id text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        state bytea NOT NULL,
        created_at double precision NOT NULL,
        last_activity double precision NOT NULL,
        ended_at double precision,
        owner_node text,
        owner_epoch bigint NOT NULL,
        lease_expires timestamptz
    );
    CREATE INDEX actorstate_sessions_by_client ON actorstate_sessions (client_id, created_at, id)
        WHERE ended_at IS NULL;
    CREATE INDEX actorstate_sessions_by_end ON actorstate_sessions (ended_at)
        WHERE ended_at IS NOT NULL;
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION


def default_node_id() -> str:
    """A node id unique to this process: host, process id and a random suffix.

    A restarted process gets a new id, so it claims its sessions afresh
    (each claim bumps the epoch, so the old process, were it still alive,
    would be fenced either way).
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def refuses_actorstate(error: psycopg.Error) -> bool:
    """Whether a failed connection is refused for good (no such database or role, credentials
    refused, not allowed in): retrying cannot mend it, unlike a server that is down."""
    return error.sqlstate in _REFUSING_SQLSTATES or any(words in str(error) for words in _REFUSING_MESSAGES)


def _sqlstate(error: psycopg.Error) -> str:
    return error.sqlstate or type(error).__name__


@contextlib.contextmanager
def _translated(name: str, doing: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as error:
        raise StoreUnavailable(f"{doing} failed on {name}: {error} ({_sqlstate(error)})") from error


class PostgresStore:
    """The session table of one PostgreSQL database, as node ``node_id``, used from one thread only."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        lease_duration: float = DEFAULT_LEASE_DURATION,
        connect: Callable[..., psycopg.Connection[Any]] = psycopg.connect,
        faults: FaultSeam | None = None,
        book: LeaseBook | None = None,
    ) -> None:
        if not lease_duration > 0:
            raise ValueError(f"lease_duration must be a positive number of seconds, not {lease_duration!r}")
        self._url = url
        self._name = shown_location(url)
        self.node_id = node_id or default_node_id()
        self.lease_duration = float(lease_duration)
        self.leases = book if book is not None else LeaseBook(self.lease_duration)
        self._connect = connect
        self._faults = faults if faults is not None else process_seam()
        self._db = self._open_connection()
        try:
            self._prepare_schema()
        except BaseException:
            self._db.close()
            raise

    @property
    def name(self) -> str:
        return self._name

    # -- the connection ---------------------------------------------------------

    def _open_connection(self) -> psycopg.Connection[Any]:
        try:
            given = conninfo_to_dict(self._url)
            # Where the URL does not say: give up connecting after 10 s, and
            # notice a server or network gone silent within about 30 s
            # instead of leaving the worker thread (and every commit behind
            # it) blocked on a dead socket.
            settings = {key: value for key, value in _CONNECTION_DEFAULTS.items() if key not in given}
            return self._connect(self._url, autocommit=True, **settings)
        except psycopg.Error as error:
            if refuses_actorstate(error):
                raise DatabaseRefused(f"{self._name} refused actorstate: {str(error).strip()}") from error
            raise StoreUnavailable(
                f"cannot connect to {self._name}: {str(error).strip()} ({_sqlstate(error)})"
            ) from error

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, opened again if the last one was lost (server restart, network)."""
        if self._db.closed or self._db.broken:
            self._db.close()
            self._db = self._open_connection()
        return self._db

    # -- the schema ---------------------------------------------------------------

    def _prepare_schema(self) -> None:
        """Refuse another application's or a newer schema; create or migrate ours under a lock."""
        db = self._db
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                version = self._check_schema()
                for step in range(version, SCHEMA_VERSION):
                    for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                        db.execute(statement)
                if version != SCHEMA_VERSION:
                    db.execute("UPDATE actorstate_schema SET version = %s", (SCHEMA_VERSION,))
        except psycopg.Error as error:
            if error.sqlstate == "42501":  # insufficient privilege: creating tables, say
                raise DatabaseRefused(
                    f"{self._name}: actorstate may not create its tables there ({error}); grant the user "
                    "CREATE on the schema, or name a database it owns"
                ) from error
            raise StoreUnavailable(
                f"preparing the schema failed on {self._name}: {error} ({_sqlstate(error)})"
            ) from error

    def _check_schema(self) -> int:
        """The schema version, after refusing a newer schema or another application's tables."""
        row = self._db.execute(
            "SELECT current_schema(), to_regclass(%s) IS NOT NULL, "
            "(SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())",
            (_SCHEMA_TABLE,),
        ).fetchone()
        assert row is not None
        schema, ours, tables = row
        if schema is None:
            raise DatabaseRefused(
                f"{self._name}: no schema of search_path exists to create actorstate's tables in; "
                "create one, or name another in the URL (?options=-csearch_path%3Dactorstate)"
            )
        if not ours:
            if tables:
                raise DatabaseRefused(
                    f"{self._name} (schema {schema}) holds tables that are not actorstate's; refusing to "
                    "change it: name a database of its own, or a schema of its own in the URL "
                    "(?options=-csearch_path%3Dactorstate)"
                )
            return 0
        stored = self._db.execute("SELECT max(version) FROM actorstate_schema").fetchone()
        version = int(stored[0]) if stored is not None and stored[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise DatabaseRefused(
                f"{self._name} was written by a newer actorstate (schema {version}; this one knows up to "
                f"{SCHEMA_VERSION}); upgrade actorstate to open it"
            )
        return version

    # -- sessions -------------------------------------------------------------------

    _CLAIM = (
        "UPDATE actorstate_sessions SET owner_node = %(node)s, "
        # Planted bug (see actorstate.planted): off unless the chaos runner asks.
        + (
            "owner_epoch = owner_epoch, "
            if active("claim-keeps-epoch")
            else "owner_epoch = owner_epoch + 1, "
        )
        + "lease_expires = now() + %(lease)s * interval '1 second' "
        "WHERE id = %(id)s AND ended_at IS NULL "
        "AND (owner_node IS NULL OR owner_node = %(node)s OR lease_expires <= now()) "
        "RETURNING client_id, version, state, owner_epoch"
    )

    def load(self, session_id: str) -> StoredSession | None:
        """Claim the session for this node and return its row; an ended row is returned unclaimed.

        Error handling:
            SessionMoved: another node holds the session under a lease that
                has not expired (by the database's clock).
            StoreUnavailable: the database failed or cannot be reached.
        """
        with _translated(self._name, f"loading session {session_id}"):
            db = self._connection()
            sent_at = self.leases.now()
            claimed = db.execute(
                self._CLAIM, {"node": self.node_id, "lease": self.lease_duration, "id": session_id}
            ).fetchone()
            if claimed is not None:
                client_id, version, state, epoch = claimed
                self.leases.granted(session_id, epoch, sent_at)
                return StoredSession(session_id, client_id, version, bytes(state), False, epoch)
            row = db.execute(
                "SELECT client_id, version, state, ended_at IS NOT NULL, owner_epoch, owner_node, "
                "extract(epoch FROM lease_expires - now()) FROM actorstate_sessions WHERE id = %s",
                (session_id,),
            ).fetchone()
        self.leases.lost(session_id)
        if row is None:
            return None
        client_id, version, state, ended, epoch, owner, remaining = row
        if ended:
            return StoredSession(session_id, client_id, version, bytes(state), True, epoch)
        raise SessionMoved(
            f"session {session_id} is served by node {owner}, whose lease on it runs "
            f"{max(0.0, float(remaining or 0)):.1f} s more; send the call to that node, or retry later",
            owner=owner,
        )

    def owner_of(self, session_id: str) -> str | None:
        with _translated(self._name, f"looking up session {session_id}"):
            row = (
                self._connection()
                .execute("SELECT client_id FROM actorstate_sessions WHERE id = %s", (session_id,))
                .fetchone()
            )
        return None if row is None else str(row[0])

    # One statement per batch: new sessions inserted, the others updated
    # over their own epoch and version; the ids that applied come back.
    # The rows are locked first, in id order (the `locked` CTE, as in
    # _LOCKED_IN_ID_ORDER).
    # last_activity has no index on purpose (every write changes it); TTL
    # expiry scans in primary-key chunks instead (see expire).
    # The snapshots go in binary (%(states)b): as text, every byte is sent
    # hex-escaped inside an array literal the server parses, which took
    # three to four times as long as the statement's whole work (35 sessions
    # of 1.5 KB: 2.4 ms against 0.75 ms).
    _WRITE = """
        WITH batch AS (
            SELECT * FROM unnest(
                %(ids)s::text[], %(clients)s::text[], %(bases)s::bigint[], %(epochs)s::bigint[],
                %(states)b::bytea[], %(created)s::float8[], %(active)s::float8[], %(ended)s::bool[]
            ) AS b(id, client_id, base_version, epoch, state, created_at, last_activity, ended)
        ),
        locked AS MATERIALIZED (
            SELECT id FROM actorstate_sessions WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE
        ),
        inserted AS (
            INSERT INTO actorstate_sessions AS s
            SELECT id, client_id, 1, state, created_at, last_activity,
                   CASE WHEN ended THEN %(now)s::float8 END, %(node)s, epoch,
                   now() + %(lease)s * interval '1 second'
            FROM batch WHERE base_version = 0
            ON CONFLICT (id) DO NOTHING
            RETURNING s.id
        ),
        updated AS (
            UPDATE actorstate_sessions AS s
            SET version = s.version + 1, state = b.state, last_activity = b.last_activity,
                ended_at = CASE WHEN b.ended THEN %(now)s::float8 END,
                lease_expires = now() + %(lease)s * interval '1 second'
            FROM batch AS b
            WHERE b.base_version > 0 AND s.id = b.id AND s.id IN (SELECT id FROM locked)
              AND s.owner_epoch = b.epoch AND s.version = b.base_version AND s.ended_at IS NULL
            RETURNING s.id
        )
        SELECT id FROM inserted UNION ALL SELECT id FROM updated
    """

    def write(self, writes: Sequence[SnapshotWrite], now: float) -> list[WriteOutcome]:
        """Commit ``writes`` in one transaction; per write, COMMITTED, CONFLICT or FENCED.

        A new session (base version 0) is inserted as this node's, under the
        write's epoch, or CONFLICT if its id exists. Any other write needs
        the row under its own epoch (else FENCED: another node claimed it),
        live and at ``base_version`` (else CONFLICT). Any other failure rolls
        the whole batch back and raises StoreUnavailable.
        """
        if not writes:
            return []
        parameters = {
            "ids": [w.id for w in writes],
            "clients": [w.client_id for w in writes],
            "bases": [w.base_version for w in writes],
            "epochs": [w.epoch for w in writes],
            "states": [w.state for w in writes],
            "created": [w.created_at for w in writes],
            "active": [w.last_activity for w in writes],
            "ended": [w.ended for w in writes],
            "now": now,
            "node": self.node_id,
            "lease": self.lease_duration,
        }
        with _translated(self._name, f"committing {len(writes)} sessions"):
            db = self._connection()
            if self._faults is not None and self._faults.commit_fails():
                raise psycopg.OperationalError("I/O error (injected through the fault seam)")
            sent_at = self.leases.now()
            # One statement on the autocommit connection is its own transaction: one
            # round trip, where BEGIN, the statement and COMMIT took three. Each round
            # trip also waits for the event loop's thread to hand back the GIL, which
            # under load took milliseconds a time and set the pace of the commits.
            applied = {row[0] for row in db.execute(self._WRITE, parameters)}
            epochs: dict[str, int] = {}
            if len(applied) != len(writes):
                # Read after the write committed, in a new snapshot: a claim that
                # committed while this write waited for the row is seen.
                missing = [w.id for w in writes if w.id not in applied]
                epochs = dict(
                    db.execute(
                        "SELECT id, owner_epoch FROM actorstate_sessions WHERE id = ANY(%s)", (missing,)
                    ).fetchall()
                )
        outcomes: list[WriteOutcome] = []
        for write in writes:
            if write.id in applied:
                outcomes.append(_COMMITTED)
                if write.ended:
                    self.leases.lost(write.id)
                else:
                    self.leases.granted(write.id, write.epoch, sent_at)
            elif write.base_version and write.id in epochs and epochs[write.id] != write.epoch:
                outcomes.append(_FENCED)
                self.leases.lost(write.id)
            else:
                outcomes.append(_CONFLICT)
        return outcomes

    def end(self, session_id: str, now: float) -> None:
        """Mark one session ended, whatever its snapshot holds and whoever owns it."""
        with _translated(self._name, f"ending session {session_id}"):
            self._connection().execute(
                "UPDATE actorstate_sessions SET ended_at = %s, version = version + 1 "
                "WHERE id = %s AND ended_at IS NULL",
                (now, session_id),
            )
        self.leases.lost(session_id)

    def list_client(
        self, client_id: str, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[str, float, float]]:
        """(id, created_at, last_activity) of up to ``limit`` of the client's live sessions
        after the key ``after`` = (created_at, id), in key order (one range of the index)."""
        with _translated(self._name, "listing sessions"):
            db = self._connection()
            if after is None:
                rows = db.execute(
                    "SELECT id, created_at, last_activity FROM actorstate_sessions "
                    "WHERE client_id = %s AND ended_at IS NULL ORDER BY created_at, id LIMIT %s",
                    (client_id, limit),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT id, created_at, last_activity FROM actorstate_sessions "
                    "WHERE client_id = %s AND ended_at IS NULL AND (created_at, id) > (%s, %s) "
                    "ORDER BY created_at, id LIMIT %s",
                    (client_id, after[0], after[1], limit),
                ).fetchall()
        return [(str(i), float(c), float(a)) for i, c, a in rows]

    def expire(
        self, after_id: str, limit: int, idle_before: float, now: float, resident: frozenset[str]
    ) -> ExpiryStep:
        """End live sessions last active before ``idle_before``, scanning one chunk of ids.

        Sessions resident here are judged by this node's runtime, and those
        under another node's live lease by that node's (it may be reading
        them without writing): both are skipped. The scan and the UPDATE are
        two statements, so the UPDATE checks idleness and the lease again on
        the locked rows: another node may have claimed and written a session
        in between, and ending it would fail that node's acknowledged use.
        """
        with _translated(self._name, "expiring idle sessions"):
            db = self._connection()
            rows = db.execute(
                "SELECT id, last_activity, ended_at IS NOT NULL, "
                "owner_node IS DISTINCT FROM %s AND lease_expires > now() "
                "FROM actorstate_sessions WHERE id > %s ORDER BY id LIMIT %s",
                (self.node_id, after_id, limit),
            ).fetchall()
            stale = [
                session_id
                for session_id, last_activity, ended, held_elsewhere in rows
                if not ended
                and not held_elsewhere
                and last_activity < idle_before
                and session_id not in resident
            ]
            ended_ids: list[str] = []
            if stale:
                ended_ids = [
                    str(row[0])
                    for row in db.execute(
                        _LOCKED_IN_ID_ORDER
                        + "UPDATE actorstate_sessions AS s SET ended_at = %s, version = version + 1 "
                        "WHERE s.id IN (SELECT id FROM locked) AND s.ended_at IS NULL "
                        "AND s.last_activity < %s AND (s.owner_node IS NOT DISTINCT FROM %s "
                        "OR s.lease_expires IS NULL OR s.lease_expires <= now()) "
                        "RETURNING s.id",
                        (stale, now, idle_before, self.node_id),
                    ).fetchall()
                ]
        for session_id in ended_ids:
            self.leases.lost(session_id)
        next_id = rows[-1][0] if len(rows) == limit else ""
        live = sum(1 for _, _, ended, _ in rows if not ended) - len(ended_ids)
        return ExpiryStep(len(ended_ids), live, next_id)

    def touch(self, last_uses: Sequence[tuple[str, float]]) -> None:
        """Move last_activity forward for sessions that were read since their last write."""
        if not last_uses:
            return
        with _translated(self._name, "recording session activity"):
            ids = [i for i, _ in last_uses]
            self._connection().execute(
                _LOCKED_IN_ID_ORDER + "UPDATE actorstate_sessions AS s SET last_activity = b.at "
                "FROM unnest(%s::text[], %s::float8[]) AS b(id, at) "
                "WHERE s.id = b.id AND s.id IN (SELECT id FROM locked) AND s.last_activity < b.at",
                (ids, ids, [at for _, at in last_uses]),
            )

    def purge(self, ended_before: float) -> int:
        with _translated(self._name, "purging ended sessions"):
            cursor = self._connection().execute(
                "DELETE FROM actorstate_sessions WHERE ended_at < %s", (ended_before,)
            )
        return max(0, cursor.rowcount)

    def maintain(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum keeps the table."""

    def size_bytes(self) -> int:
        with _translated(self._name, "measuring the database"):
            row = (
                self._connection().execute("SELECT pg_total_relation_size('actorstate_sessions')").fetchone()
            )
        return int(row[0]) if row is not None else 0

    def moved(self, versions: Mapping[str, int]) -> list[str]:
        """Renew this node's leases on these resident sessions in one statement; those it could not
        renew (claimed elsewhere, ended) or whose version differs are the ones to reload."""
        ids, epochs, unknown = self.leases.renewal_of(versions)
        renewed: list[tuple[str, int]] = []
        moved = list(unknown)
        with _translated(self._name, "renewing leases"):
            db = self._connection()
            sent_at = self.leases.now()
            rows = (
                db.execute(
                    _LOCKED_IN_ID_ORDER + "UPDATE actorstate_sessions AS s "
                    "SET lease_expires = now() + %s * interval '1 second' "
                    "FROM unnest(%s::text[], %s::bigint[]) AS b(id, epoch) "
                    "WHERE s.id = b.id AND s.id IN (SELECT id FROM locked) "
                    "AND s.owner_epoch = b.epoch AND s.ended_at IS NULL "
                    "RETURNING s.id, s.owner_epoch, s.version",
                    (ids, self.lease_duration, ids, epochs),
                ).fetchall()
                if ids
                else []
            )
        found = set()
        for session_id, epoch, version in rows:
            found.add(session_id)
            renewed.append((session_id, epoch))
            if version != versions[session_id]:
                moved.append(session_id)
        moved.extend(session_id for session_id in ids if session_id not in found)
        self.leases.renewed(renewed, ids, sent_at)
        return moved

    # Gives up leases: matched on the epoch too, so a lease taken since
    # (by another node, or by a newer process under this node's id, or by
    # this node loading the session again) is kept.
    _RELEASE = (
        _LOCKED_IN_ID_ORDER + "UPDATE actorstate_sessions AS s "
        "SET owner_node = NULL, lease_expires = NULL "
        "FROM unnest(%s::text[], %s::bigint[]) AS b(id, epoch) "
        "WHERE s.id = b.id AND s.id IN (SELECT id FROM locked) "
        "AND s.owner_epoch = b.epoch AND s.owner_node = %s"
    )

    def release(self, leases: Sequence[tuple[str, int]]) -> None:
        """Give up the leases on sessions taken out of memory (passivated or evicted), so that
        another node may claim them at once instead of waiting out the lease.

        Only leases this node still holds under the epoch given are given up:
        a session loaded again since was claimed under a newer epoch.

        Error handling:
            StoreUnavailable: the database failed; the leases simply expire.
        """
        held = [(session_id, epoch) for session_id, epoch in leases if self.leases.epoch(session_id) == epoch]
        if not held:
            return
        ids = [session_id for session_id, _ in held]
        epochs = [epoch for _, epoch in held]
        with _translated(self._name, f"giving up the leases of {len(ids)} sessions"):
            self._connection().execute(self._RELEASE, (ids, ids, epochs, self.node_id))
        for session_id in ids:
            self.leases.lost(session_id)

    def close(self) -> None:
        """Give up this node's leases (the runtime has committed everything by now), then disconnect.

        Another node may then claim these sessions at once instead of
        waiting out the leases. If the release fails (the server is gone),
        the leases simply expire.
        """
        try:
            ids, epochs, _ = self.leases.renewal_of(self.leases.held_ids())
            if ids and not (self._db.closed or self._db.broken):
                with contextlib.suppress(psycopg.Error):
                    self._db.execute(self._RELEASE, (ids, ids, epochs, self.node_id))
        finally:
            with _translated(self._name, "closing the database"):
                self._db.close()


async def open_postgres_store(
    url: str,
    parking: Parking,
    *,
    node_id: str | None = None,
    lease_duration: float = DEFAULT_LEASE_DURATION,
    connect: Callable[..., psycopg.Connection[Any]] | None = None,
) -> ThreadedStore:
    """Connect to the PostgreSQL database at ``url`` (creating or migrating the schema) on a new worker thread.

    ``node_id`` names this node in the rows it owns (a new unique id when
    omitted); ``lease_duration`` is how long, by the database's clock, a
    session stays this node's after its last claim, write or renewal.

    Error handling:
        DatabaseRefused: another application's tables, a newer schema, a
            database that does not exist, or refused credentials.
        StoreUnavailable: the server cannot be reached now.
    """
    worker = DatabaseThread(parking, name="actorstate-postgres")
    try:
        engine = await worker.run(
            lambda: PostgresStore(
                url, node_id=node_id, lease_duration=lease_duration, connect=connect or psycopg.connect
            )
        )
    except BaseException:
        await worker.stop()
        raise
    return ThreadedStore(engine, worker, engine.leases.renewal_due)
