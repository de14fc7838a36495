"""Bearer tokens for the HTTP transport: the SDK's ``TokenVerifier`` over a tokens file.

A token's principal becomes the SDK's ``AccessToken``: its client and
subject as such, its issuer as the ``iss`` claim (from which
:func:`.caller.principal_key` builds the owner of its sessions). A token
marked operator carries the ``operator`` scope.

Every verifier here also has ``reload()``: ``actorstate serve`` calls it on
SIGHUP, and a verifier whose file is now bad keeps what it had.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc
from mcp.server.auth.provider import AccessToken

from .caller import OPERATOR_SCOPE

if TYPE_CHECKING:
    from .tokens import TokensFile

__all__ = ["OPERATOR_SCOPE", "ReloadableVerifier", "TokensFileVerifier", "reload_on_sighup"]

logger = logging.getLogger(__name__)


class ReloadableVerifier(Protocol):
    async def verify_token(self, token: str) -> AccessToken | None: ...

    def reload(self) -> bool: ...


class TokensFileVerifier:
    """Accepts the tokens of a tokens file (see :mod:`.tokens`)."""

    def __init__(self, tokens: TokensFile) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        entry = self.tokens.lookup(token)
        if entry is None:
            return None
        principal = entry.principal
        return AccessToken(
            token=token,
            client_id=principal.client,
            subject=principal.subject,
            scopes=[OPERATOR_SCOPE] if entry.operator else [],
            claims={"iss": principal.issuer},
        )

    def reload(self) -> bool:
        return self.tokens.reload()


async def reload_on_sighup(
    verifier: ReloadableVerifier, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Reload ``verifier`` on every SIGHUP until cancelled (main thread only)."""
    with anyio.open_signal_receiver(signal.SIGHUP) as received:
        task_status.started()
        async for _ in received:
            logger.info("received SIGHUP: reloading the tokens")
            # The file is small, but reading it is blocking I/O: off the loop.
            await anyio.to_thread.run_sync(verifier.reload)
