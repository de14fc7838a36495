"""The tokens file: bearer tokens for a small team, and the verifier the HTTP server asks.

``actorstate tokens add NAME`` makes a random token, prints it once and keeps
only its SHA-256 here, with the principal NAME; ``tokens list`` and ``tokens
revoke NAME`` read and change the same file. The server loads it with
:class:`TokensFile` and re-reads it on SIGHUP (:meth:`TokensFile.reload`).

The file is JSON, one object::

    {"format": 1,
     "tokens": [{"name": "alice", "sha256": "<64 hex digits>",
                 "created": "2026-11-26T01:10:21+00:00", "operator": false}]}

Names are 1 to 64 of ``A-Z a-z 0-9 . _ @ -`` and unique; so are the hashes.
Every change is a read-modify-write under an exclusive ``flock`` on
``PATH.lock`` (two shells adding at once both land), written to a temporary
file in the same directory, fsynced and renamed over the old one, with mode
0600: a reader sees the old file or the new one, never half of one.

A server refuses a tokens file that its group or others may read or write
(as ssh refuses such a key): a hash is no secret worth stealing, but whoever
may write the file may add a token of their own. ``tokens add`` and ``tokens
revoke`` always write it 0600, which also mends a file made by hand.

No token is ever stored: a leaked file gives no one access, since a token is
32 random bytes and only their hash is here.

This module imports no MCP SDK and no event loop, so ``actorstate tokens``
starts fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import InvalidInput, TokensFileError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "FORMAT",
    "MAX_TOKEN_CHARS",
    "TOKENS_FILE_ISSUER",
    "TOKEN_PREFIX",
    "Principal",
    "TokenEntry",
    "TokensFile",
    "add_token",
    "check_name",
    "check_private",
    "list_tokens",
    "load_tokens",
    "revoke_token",
]

logger = logging.getLogger(__name__)

FORMAT = 1
# Recognisable in a config file, a log or a secret scanner's rules.
TOKEN_PREFIX = "ast_"
# A real token is 47 characters; anything this long is refused before hashing.
MAX_TOKEN_CHARS = 512
# The issuer of every principal the tokens file makes. A JWT issuer is an
# https URL (RFC 8414, OpenID Connect), so it can never equal this string;
# the JWT verifier must refuse a token whose "iss" is not such a URL.
TOKENS_FILE_ISSUER = "tokens-file"

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ENTRY_KEYS = frozenset({"name", "sha256", "created", "operator"})
_FILE_MODE = 0o600
# The permission bits a server's tokens file must not have: any for group or others.
_NOT_PRIVATE = 0o077


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request over HTTP: the authenticated (issuer, subject, client).

    A tokens-file principal is ``(TOKENS_FILE_ISSUER, NAME, NAME)``; a JWT's is
    its ``iss``, ``sub`` and ``client_id`` (or ``azp``).
    """

    issuer: str
    subject: str
    client: str

    @property
    def key(self) -> str:
        """The string the state stores as the owner of this principal's sessions.

        The three parts, each percent-encoded, joined by ``|``:
        ``tokens-file|alice|alice``, ``https://id.example.com|user%7C42|app``.
        Encoding ``%`` and ``|`` in every part makes the key one-to-one: no two
        principals share a key whatever their parts contain, and a tokens-file
        principal cannot meet a JWT one, whose issuer is an https URL.
        """
        return "|".join(quote(part, safe="@:/") for part in (self.issuer, self.subject, self.client))


@dataclasses.dataclass(frozen=True, slots=True)
class TokenEntry:
    """One token of the file: whose it is and the SHA-256 of the token (never the token)."""

    name: str
    sha256: str
    created: str
    operator: bool = False

    @property
    def principal(self) -> Principal:
        return Principal(TOKENS_FILE_ISSUER, self.name, self.name)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "created": self.created, "operator": self.operator}


def _hash(token: str) -> str:
    # surrogatepass: a token is whatever the client sent; hashing must not raise.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    """Return ``name`` if a token may be called that; raise :class:`InvalidInput` otherwise."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"token name {name!r} is not allowed: use 1 to 64 letters, digits or . _ @ - (no spaces)"
        )
    return name


# -- reading and validating ----------------------------------------------------


def _entry(path: Path, index: int, raw: object) -> TokenEntry:
    where = f"{path}: tokens[{index}]"
    if not isinstance(raw, dict):
        raise TokensFileError(f"{where} is not an object")
    missing = _ENTRY_KEYS - raw.keys()
    if missing:
        raise TokensFileError(f"{where} has no {', '.join(sorted(missing))}")
    unknown = raw.keys() - _ENTRY_KEYS
    if unknown:
        raise TokensFileError(f"{where} has unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    name, sha256, created, operator = raw["name"], raw["sha256"], raw["created"], raw["operator"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokensFileError(f"{where}: name {name!r} is not 1 to 64 of A-Z a-z 0-9 . _ @ -")
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        raise TokensFileError(f"{where} ({name}): sha256 is not 64 lowercase hex digits")
    if not isinstance(created, str):
        raise TokensFileError(f"{where} ({name}): created is not an ISO 8601 time")
    try:
        datetime.datetime.fromisoformat(created)
    except ValueError:
        raise TokensFileError(f"{where} ({name}): created {created!r} is not an ISO 8601 time") from None
    if not isinstance(operator, bool):
        raise TokensFileError(f"{where} ({name}): operator is not true or false")
    return TokenEntry(name, sha256, created, operator)


def _parse(path: Path, text: str) -> list[TokenEntry]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise TokensFileError(f"{path} is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise TokensFileError(
            f'{path} is not a tokens file: expected an object {{"format": 1, "tokens": [...]}}'
        )
    if document.get("format") != FORMAT:
        raise TokensFileError(
            f"{path} has format {document.get('format')!r}; this actorstate reads format {FORMAT}"
        )
    raw_tokens = document.get("tokens")
    if not isinstance(raw_tokens, list):
        raise TokensFileError(f'{path} has no "tokens" list')
    entries = [_entry(path, index, raw) for index, raw in enumerate(raw_tokens)]
    names: set[str] = set()
    hashes: set[str] = set()
    for entry in entries:
        if entry.name in names:
            raise TokensFileError(f"{path} names {entry.name!r} twice")
        if entry.sha256 in hashes:
            raise TokensFileError(f"{path} has the same sha256 twice (the second at {entry.name!r})")
        names.add(entry.name)
        hashes.add(entry.sha256)
    return entries


def load_tokens(path: str | os.PathLike[str]) -> list[TokenEntry]:
    """Read and check the whole tokens file at ``path``.

    Returns:
        Its entries, in file order.

    Error handling:
        :class:`TokensFileError` naming the file and the fault: missing,
        unreadable, not JSON, another format version, a bad entry (with its
        index), a name or hash given twice.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokensFileError(
            f"{path} does not exist (create it with: actorstate tokens add NAME --tokens-file {path})"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise TokensFileError(f"{path} cannot be read ({error})") from None
    return _parse(path, text)


def check_private(path: str | os.PathLike[str]) -> None:
    """Refuse a tokens file that its group or others may read or write.

    Error handling:
        :class:`TokensFileError` naming the file, its mode and the ``chmod``
        that mends it (a missing file passes: :func:`load_tokens` names it).
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    except OSError as error:
        raise TokensFileError(f"{path} cannot be read ({error})") from None
    if mode & _NOT_PRIVATE:
        raise TokensFileError(
            f"{path} has mode {mode:04o}: its group or others may read or change it, and whoever "
            f"may change it may add a token of their own. Make it private: chmod 600 {path}"
        )


# -- changing --------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``PATH.lock`` (created if missing) for one read-modify-write.

    ``flock`` belongs to the open file description, so it excludes other
    processes and other threads of this one alike.
    """
    import fcntl  # here, not at the top: the module stays importable where there is no fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, _FILE_MODE)
    except OSError as error:
        raise TokensFileError(f"{path}: cannot create its lock file ({error})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write(path: Path, entries: list[TokenEntry]) -> None:
    """Replace the file with ``entries``: temp file, fsync, rename, fsync of the directory."""
    text = json.dumps({"format": FORMAT, "tokens": [e.to_json() for e in entries]}, indent=2) + "\n"
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise TokensFileError(f"{path}: cannot write next to it ({error})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), _FILE_MODE)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise TokensFileError(f"{path} was not changed: writing it failed ({error})") from None
    # The rename is durable once the directory is; not every platform lets a
    # directory be opened for that, and the file itself is already safe.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def add_token(path: str | os.PathLike[str], name: str, *, operator: bool = False) -> str:
    """Make a token for ``name``, store its hash in the file at ``path``, return the token.

    The file (and its directory) is created if missing. The token is returned
    only here: the file keeps its SHA-256 alone.

    Error handling:
        :class:`InvalidInput` for a name that is not allowed;
        :class:`TokensFileError` if the name already has a token or the file
        is malformed or cannot be written (the file is then unchanged).
    """
    check_name(name)
    path = Path(path)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with _locked(path):
        entries = load_tokens(path) if path.exists() else []
        if any(entry.name == name for entry in entries):
            raise TokensFileError(
                f"{path} already has a token named {name!r}: revoke it first "
                f"(actorstate tokens revoke {name}) or choose another name"
            )
        entries.append(TokenEntry(name, _hash(token), created, operator))
        _write(path, entries)
    return token


def list_tokens(path: str | os.PathLike[str]) -> list[TokenEntry]:
    """The entries of the file at ``path`` (names, hashes, times, operator flags; no tokens).

    Error handling: as :func:`load_tokens`.
    """
    return load_tokens(path)


def revoke_token(path: str | os.PathLike[str], name: str) -> None:
    """Remove ``name``'s token from the file at ``path``.

    A running server stops accepting it at its next reload (SIGHUP).

    Error handling:
        :class:`TokensFileError` if there is no token of that name, or the
        file is missing, malformed or cannot be written (it is then unchanged).
    """
    path = Path(path)
    with _locked(path):
        entries = load_tokens(path)
        kept = [entry for entry in entries if entry.name != name]
        if len(kept) == len(entries):
            raise TokensFileError(f"{path} has no token named {name!r} (see: actorstate tokens list)")
        _write(path, kept)


# -- verifying -------------------------------------------------------------------


class TokensFile:
    """The tokens a server accepts, loaded from a tokens file; re-read by :meth:`reload`.

    :meth:`verify` and :meth:`lookup` may be called from any thread while
    :meth:`reload` runs in another: a reload builds a new table and swaps it in
    with one assignment, so a lookup sees the old table or the new one.

    Error handling:
        The constructor raises :class:`TokensFileError` if the file is not
        valid or not private (:func:`check_private`): a server should not
        start without the tokens it was told to use, nor with tokens anyone
        else may have written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._table = self._read()
        # Counts the tables taken; moves only after a new one is in place (see reload).
        self.generation = 0
        logger.info("loaded %d tokens from %s", len(self._table), self.path)

    def _read(self) -> dict[str, TokenEntry]:
        check_private(self.path)
        return {entry.sha256: entry for entry in load_tokens(self.path)}

    def __len__(self) -> int:
        return len(self._table)

    def reload(self) -> bool:
        """Re-read the file. Returns whether the new table was taken.

        If the file is now missing, invalid or no longer private, the tokens loaded before stay
        in use and a warning says why: a bad edit must not lock everyone out
        of a running server.
        """
        try:
            table = self._read()
        except TokensFileError as error:
            logger.warning("kept the %d tokens loaded before: %s", len(self._table), error)
            return False
        self._table = table
        # After the swap, never before: whoever read the old generation and then looked a
        # token up (in either table) holds an answer the new generation makes stale.
        self.generation += 1
        logger.info("loaded %d tokens from %s", len(table), self.path)
        return True

    def lookup(self, token: str) -> TokenEntry | None:
        """The entry of the presented ``token``, or None if it is not one of the file's."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = _hash(token)
        entry = self._table.get(digest)
        # The dict finds the entry by the digest's hash; the comparison that
        # decides takes the same time wherever two digests differ. (A caller
        # cannot steer a SHA-256 prefix anyway, so nothing leaks either way.)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            return None
        return entry

    def verify(self, token: str) -> Principal | None:
        """The principal the presented bearer ``token`` belongs to, or None (reject it)."""
        entry = self.lookup(token)
        return None if entry is None else entry.principal
