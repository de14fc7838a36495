"""Where the ``actorstate`` commands find their database: one rule for all of them.

``serve``, ``sessions`` and ``doctor`` take the file named on the command line
(``--db``, or ``doctor``'s positional ``PATH``), else the one ``ACTORSTATE_DB``
names, else the state file in the user's data directory. An empty
``ACTORSTATE_DB`` counts as unset. The location remembers which of the three
named it, so that an error can name what the user gave.

This module imports only the standard library, and little of it (a NamedTuple,
not a dataclass, which would import ``inspect``): every command reads it first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DATABASE_VARIABLE",
    "DatabaseLocation",
    "default_database",
    "find_database",
    "is_postgres_url",
    "shown_location",
]

DATABASE_VARIABLE = "ACTORSTATE_DB"


def is_postgres_url(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database (``postgresql://...``) rather than a file."""
    return location.startswith(("postgresql://", "postgres://"))


def shown_location(location: str) -> str:
    """``location`` as it may be printed and logged: a URL's password (in the address or as a
    ``password=`` parameter) replaced by ``***``."""
    if not is_postgres_url(location):
        return location
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(location)
    if parts.password is not None:
        port = f":{parts.port}" if parts.port else ""
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{parts.hostname or ''}{port}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        shown = [(key, "***" if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(shown, safe="*/"))
    return urlunsplit(parts)


def default_database() -> Path:
    """The state file in the user's data directory (XDG on Linux)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("APPDATA", Path.home()))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "actorstate" / "state.db"


class DatabaseLocation(NamedTuple):
    """A database file and what named it.

    ``named_by`` is the flag the user gave (``--db``, or ``PATH`` for doctor's
    positional argument), ``ACTORSTATE_DB``, or ``None`` for the default.
    """

    path: str
    named_by: str | None

    def point_at(self, what: str) -> str:
        """Advice to name another file, in the terms the user used: ``Point --db at {what}.``"""
        if self.named_by == DATABASE_VARIABLE:
            return f"Point {DATABASE_VARIABLE} (or --db) at {what}."
        if self.named_by == "PATH":
            return f"Name {what}: actorstate doctor PATH."
        return f"Point --db at {what}."

    def missing(self) -> str:
        """The one line for a file that is not there, saying where the name came from."""
        if self.named_by == DATABASE_VARIABLE:
            return f"{self.path} does not exist (named by {DATABASE_VARIABLE})"
        if self.named_by is None:
            return (
                f"{self.path} does not exist (the default database; "
                f"name another with --db or {DATABASE_VARIABLE})"
            )
        return f"{self.path} does not exist"


def find_database(
    given: str | None, *, flag: str = "--db", environ: Mapping[str, str] | None = None
) -> DatabaseLocation:
    """The database a command works on: ``given`` (from ``flag``), then ``ACTORSTATE_DB``, then the default.

    Nothing is checked or created here: whether the file must exist is the
    command's business.
    """
    if given:
        return DatabaseLocation(given if is_postgres_url(given) else os.path.expanduser(given), flag)
    variable = (os.environ if environ is None else environ).get(DATABASE_VARIABLE)
    if variable:
        location = variable if is_postgres_url(variable) else os.path.expanduser(variable)
        return DatabaseLocation(location, DATABASE_VARIABLE)
    return DatabaseLocation(str(default_database()), None)
