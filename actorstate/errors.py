"""One exception tree for everything actorstate raises on purpose.

Callers catch :class:`ActorStateError` to handle every refusal the library
makes; the subclasses say which kind it was. Errors from the user's own code
(an ``update`` function that raises) are passed through unchanged.
"""

from __future__ import annotations

__all__ = [
    "ActorStateError",
    "ConfigError",
    "DatabaseRefused",
    "InvalidInput",
    "Overloaded",
    "SessionMoved",
    "SessionNotFound",
    "SessionQuarantined",
    "StateClosed",
    "StoreError",
    "StoreUnavailable",
    "TokensFileError",
]


class ActorStateError(Exception):
    """Base class of every error actorstate raises."""


class SessionNotFound(ActorStateError):
    """The session is unknown, ended, expired, or belongs to another client.

    All four cases share one message on purpose: a caller must not be able to
    tell another client's session from one that never existed.
    """

    MESSAGE = "Session not found or expired"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class InvalidInput(ActorStateError):
    """An argument breaks a limit or has the wrong shape; nothing was changed."""


class Overloaded(ActorStateError):
    """A session's mailbox stayed full for longer than ``Config.ask_timeout``."""


class SessionQuarantined(ActorStateError):
    """The session's actor crashed too often and stopped serving.

    It serves again once it is ended (and created anew) or the server restarts.
    """


class ConfigError(ActorStateError, ValueError):
    """A :class:`~actorstate.Config` field (or a setting built into one) is out of range."""


class StoreError(ActorStateError):
    """The durable store failed or refused; the change this call made was not kept.

    Catch this to handle both kinds below.
    """


class DatabaseRefused(StoreError):
    """The database file cannot be used: not an SQLite database, another application's,
    written by a newer actorstate, corrupt, a directory, or unreadable. It was not changed.
    Retrying does not help; point at another file or upgrade."""


class SessionMoved(StoreError):
    """A newer owner (another node sharing the store) now holds this session; this node
    dropped its copy and kept nothing of the call. Retry: the call goes to the owner.

    ``owner`` is the node id of the node serving the session, when it is known
    (a node may take its URL as its id, so this says where to send the call).
    """

    def __init__(self, message: str, *, owner: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner


class StoreUnavailable(StoreError):
    """The store failed this time (disk full, I/O error, locked past ``busy_timeout``,
    the file deleted or replaced); the calls it held failed and nothing they
    changed was kept. It may serve again once the cause clears: retry later."""


class StateClosed(ActorStateError):
    """The state was closed (``open_state`` exited); it takes no more calls."""


class TokensFileError(ActorStateError):
    """A tokens file (``--tokens-file``) is missing, unreadable or malformed, or an
    ``actorstate tokens`` change to it was refused; the message names the file and
    what is wrong. A refused change left the file as it was."""
