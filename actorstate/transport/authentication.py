"""Bearer tokens for the HTTP transport: the SDK's ``TokenVerifier`` over a tokens file.

A token's principal becomes the SDK's ``AccessToken``: its client and
subject as such, its issuer as the ``iss`` claim (from which
:func:`.caller.principal_key` builds the owner of its sessions). A token
marked operator carries the ``operator`` scope.

Every verifier here also has ``reload()``: ``actorstate serve`` calls it on
SIGHUP, and a verifier whose file is now bad keeps what it had. After a
reload that took new credentials, the verifier's ``reloads``
(:class:`ReloadNotices`) tell whoever subscribed: the HTTP server then
closes what revoked tokens still hold open (event streams, protocol
sessions), which no later request would re-check.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
import anyio.abc
from mcp.server.auth.provider import AccessToken

from .caller import OPERATOR_SCOPE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .tokens import TokensFile

__all__ = [
    "OPERATOR_SCOPE",
    "ReloadNotices",
    "ReloadableVerifier",
    "TokensFileVerifier",
    "reload_credentials",
    "reload_on_sighup",
]

logger = logging.getLogger(__name__)


class ReloadNotices:
    """Who hears that a verifier took new credentials: each subscriber is awaited, in order."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[], Awaitable[object]]] = []

    def subscribe(self, subscriber: Callable[[], Awaitable[object]]) -> None:
        self._subscribers.append(subscriber)

    async def announce(self) -> None:
        """Await every subscriber; one that fails is logged and the others still run."""
        for subscriber in list(self._subscribers):
            try:
                await subscriber()
            except Exception:
                logger.exception("after reloading the tokens, %r failed", subscriber)


@runtime_checkable
class ReloadableVerifier(Protocol):
    reloads: ReloadNotices

    async def verify_token(self, token: str) -> AccessToken | None: ...

    def reload(self) -> bool: ...


VERIFIED_CACHE_LIMIT = 4096


class TokensFileVerifier:
    """Accepts the tokens of a tokens file (see :mod:`.tokens`)."""

    def __init__(self, tokens: TokensFile) -> None:
        self.tokens = tokens
        self.reloads = ReloadNotices()
        # Tokens verified, with the generation of the tokens table they were
        # verified under, and what they proved: the digest, the lookup and
        # the model cost about a twentieth of a fast-path call's CPU. Only
        # accepted tokens are kept, at most VERIFIED_CACHE_LIMIT of them, and
        # one kept under an older table is verified again (a revoked token is
        # refused from the reload on). The generation is read before the
        # lookup: a reload runs on a worker thread, and a lookup in the old
        # table that lands in the cache after the reload must not outlive it.
        self._verified: dict[str, tuple[int, AccessToken]] = {}

    def verified_now(self, token: str) -> AccessToken | None:
        """The token's AccessToken if it was verified under the tokens table loaded now, else None
        (not verified yet, revoked, or verified under an older table: ask :meth:`verify_token`)."""
        kept = self._verified.get(token)
        if kept is not None and kept[0] == self.tokens.generation:
            return kept[1]
        return None

    async def verify_token(self, token: str) -> AccessToken | None:
        generation = self.tokens.generation
        kept = self._verified.get(token)
        if kept is not None and kept[0] == generation:
            return kept[1]
        entry = self.tokens.lookup(token)
        if entry is None:
            return None
        principal = entry.principal
        verified = AccessToken(
            token=token,
            client_id=principal.client,
            subject=principal.subject,
            scopes=[OPERATOR_SCOPE] if entry.operator else [],
            claims={"iss": principal.issuer},
        )
        if len(self._verified) >= VERIFIED_CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = (generation, verified)
        return verified

    def reload(self) -> bool:
        taken = self.tokens.reload()
        if taken:
            self._verified.clear()  # stale by their generation already: this frees them
        return taken


async def reload_on_sighup(
    verifier: ReloadableVerifier, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Reload ``verifier`` on every SIGHUP until cancelled (main thread only)."""
    with anyio.open_signal_receiver(signal.SIGHUP) as received:
        task_status.started()
        async for _ in received:
            logger.info("received SIGHUP: reloading the tokens")
            await reload_credentials(verifier)


async def reload_credentials(verifier: ReloadableVerifier) -> bool:
    """Reload ``verifier``; when it took new credentials, announce it to its subscribers.

    Returns whether it took them (a bad file keeps the old ones, see ``reload``).
    """
    # The file is small, but reading it is blocking I/O: off the loop.
    taken = await anyio.to_thread.run_sync(verifier.reload)
    if taken:
        await verifier.reloads.announce()
    return taken
