"""Who asks the operations endpoints and the operator's API: authenticated or not, operator or not."""

from __future__ import annotations

import dataclasses

from .caller import OPERATOR_SCOPE

__all__ = ["Requester", "requester_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, as far as these endpoints care: authenticated or not, operator or not."""

    authenticated: bool = False
    operator: bool = False


def requester_of(user: object) -> Requester:
    """The requester of an ASGI scope's ``user`` (the SDK's ``AuthenticatedUser`` when its token passed)."""
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

    if isinstance(user, AuthenticatedUser):
        return Requester(authenticated=True, operator=OPERATOR_SCOPE in user.scopes)
    return Requester()
