"""Who is calling a tool, and so which sessions the call may touch.

Over stdio one client owns the process: ``clientId`` labels sessions (for
listing them), it does not authenticate, and a session id acts for the
owner. Over HTTP with authentication the caller is the principal its token
names: every session it creates is owned by that principal, it sees and
touches only its own sessions (another principal's session answers exactly
like an unknown one: the state's lookup scoped by owner does that), and a
``clientId`` argument can only name itself: the identity comes from the
token, never from an argument.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..planted import active
from ..state import DEFAULT_CLIENT_ID
from .quoting import clipped_repr
from .tokens import Principal

if TYPE_CHECKING:
    from typing import Any

    from ..state import Session, State


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """The process's owner (``principal`` None) or an authenticated principal, by its key.

    ``operator``: an authenticated principal whose token carries the
    operator scope (a tokens-file token added with ``--operator``, a JWT
    with ``operator`` in its ``scope``); the owner is one by definition.
    """

    principal: str | None = None
    operator: bool = False

    def check_operator(self, what: str) -> None:
        """Refuse ``what`` (figures about every client) to an authenticated caller who is no operator.

        Error handling:
            InvalidInput: saying how to get an operator's token.
        """
        if self.principal is not None and not self.operator:
            raise InvalidInput(
                f"{what} is for operators: its figures cover every client. Use a token made with "
                "`actorstate tokens add NAME --operator` (or a JWT whose scope includes "
                f"{OPERATOR_SCOPE!r})"
            )

    def session(self, state: State, session_id: str) -> Session:
        """The session ``session_id`` names, as this caller may use it."""
        if self.principal is None or _LEAK_ACROSS_PRINCIPALS:
            return state.session_as_owner(session_id)
        return state.session(session_id, self.principal)

    def client_id(self, named: str) -> str:
        """The client the sessions of this call belong to, given the ``clientId`` argument.

        Error handling:
            InvalidInput: an authenticated caller named another client.
        """
        if self.principal is None:
            return named
        if named in (DEFAULT_CLIENT_ID, self.principal):
            return self.principal
        raise InvalidInput(
            f"clientId {clipped_repr(named)} names another client: over HTTP your identity comes "
            f"from your token (you are {self.principal!r}); leave clientId out"
        )


# A planted bug (actorstate.planted) that the chaos runner's cross-principal probes must catch.
_LEAK_ACROSS_PRINCIPALS = active("leak-across-principals")

OWNER = Caller()
# The token scope that makes a principal an operator.
OPERATOR_SCOPE = "operator"
# Past this, a principal's key is shortened (see principal_key); well under
# Config.max_key_length, the limit on a client id.
MAX_PRINCIPAL_KEY = 160


def principal_key(token: Any) -> str:
    """The owner key of the principal an access token names: issuer, subject and client together.

    ``token`` is the SDK's ``AccessToken`` (not imported: stdio never loads
    the SDK for this). Two principals differ when any part differs, so one
    issuer's subject cannot act as another issuer's namesake (see
    :attr:`.tokens.Principal.key`).
    """
    issuer = (token.claims or {}).get("iss")
    return _principal_key(str(issuer or ""), token.subject or "", token.client_id)


@functools.lru_cache(maxsize=4096)  # a pure function of the parts, asked on every HTTP request
def _principal_key(issuer: str, subject: str, client: str) -> str:
    key = Principal(issuer, subject, client).key
    if len(key) > MAX_PRINCIPAL_KEY:
        # A key is stored with every session the principal owns, under the
        # state's limit on a client id: a long one keeps its start, readable,
        # and a digest of the whole, which keeps principals apart.
        key = f"{key[:64]}#{hashlib.sha256(key.encode()).hexdigest()}"
    return key
