"""What a tool of one's own gets from actorstate.mcp: the caller's session and state, scoped
to the caller's identity, with actorstate's errors as the SDK's tool errors."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

import actorstate
from actorstate import (
    ActorStateError,
    DatabaseRefused,
    InvalidInput,
    Overloaded,
    SessionMoved,
    SessionNotFound,
    SessionQuarantined,
    StateClosed,
    StoreUnavailable,
)
from actorstate.mcp import StateContext, ToolSession, caller_state, state_context_of, tool_errors

pytestmark = pytest.mark.anyio


def _request_context(state_context: StateContext, subject: str | None) -> Context:
    """A tool's Context as the SDK makes one for a request: over HTTP with a bearer token naming
    ``subject`` (its verifier's AccessToken on the request's scope), or with no HTTP request."""
    request = None
    if subject is not None:
        token = AccessToken(
            token="opaque",
            client_id="shop-app",
            scopes=[],
            subject=subject,
            claims={"iss": "https://id.example"},
        )
        request = SimpleNamespace(scope={"user": AuthenticatedUser(token)})
    return Context(
        request_context=ServerRequestContext(
            session=None,  # type: ignore[arg-type]  # not used by what is tested
            lifespan_context=state_context,
            protocol_version="2026-07-28",
            method="tools/call",
            request=request,
        )
    )


async def test_an_authenticated_caller_sees_only_its_own_sessions() -> None:
    """Over HTTP a caller's sessions are its principal's: another principal's session answers as
    an unknown one, as a tool error; the process's owner (no HTTP request) reaches every session."""
    async with actorstate.open_state() as state:
        state_context = StateContext(state)
        alice = caller_state(_request_context(state_context, "alice"))
        bob = caller_state(_request_context(state_context, "bob"))
        owner = caller_state(_request_context(state_context, None))

        cart = await alice.create_session()
        await cart.increment("tea")
        assert await alice.list_sessions() == [cart.id]
        assert await bob.list_sessions() == []
        with pytest.raises(ToolError, match=r"^Session not found or expired$"):
            await bob.session(cart.id).context()
        with pytest.raises(ToolError, match="names another client"):
            await bob.create_session(client_id="alice")
        assert (await owner.session(cart.id).context())["metadata"] == {"tea": 1}
        assert cart.session.client_id == alice.caller.principal


@pytest.mark.parametrize(
    "error",
    [
        SessionNotFound(),
        InvalidInput("key must be at most 256 characters"),
        Overloaded("the session's mailbox stayed full"),
        SessionQuarantined("the session crashed too often"),
        StoreUnavailable("disk full; nothing was kept"),
        SessionMoved("another node owns the session; retry"),
        DatabaseRefused("not an actorstate database"),
        StateClosed("the state is closed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_actorstate_error_becomes_a_tool_error_with_its_message(error: ActorStateError) -> None:
    """tool_errors() raises the SDK's ToolError with the error's own message, for every kind."""
    with pytest.raises(ToolError) as raised, tool_errors():
        raise error
    assert str(raised.value) == str(error)


def test_other_errors_pass_through() -> None:
    """An exception that is not actorstate's is left for the SDK to treat as a crash."""
    with pytest.raises(KeyError), tool_errors():
        raise KeyError("cart")


async def test_an_update_raising_actorstate_errors_changes_nothing() -> None:
    """An InvalidInput the update function raises is a tool error and the session is unchanged."""
    async with actorstate.open_state() as state:
        session = await caller_state(_request_context(StateContext(state), None)).create_session()
        await session.update(lambda metadata: metadata.update(cart={"tea": 1}))

        def overfill(metadata: dict[str, Any]) -> None:
            metadata["cart"]["cup"] = 1
            raise InvalidInput("the cart is full")

        with pytest.raises(ToolError, match=r"^the cart is full$"):
            await session.update(overfill)
        assert (await session.context())["metadata"] == {"cart": {"tea": 1}}
        with pytest.raises(ToolError, match="must be a UUID"):
            caller_state(_request_context(StateContext(state), None)).session("cart-7")
        await session.end()
        with pytest.raises(ToolError, match=r"^Session not found or expired$"):
            await session.increment()
        assert await state.list_sessions() == []


def test_a_tool_session_has_every_method_of_a_session() -> None:
    """ToolSession mirrors actorstate.Session: each public method, with the same parameters."""
    public = {
        name
        for name in dir(actorstate.Session)
        if not name.startswith("_") and name not in ("id", "client_id")
    }
    for name in public:
        assert inspect.signature(getattr(ToolSession, name)) == inspect.signature(
            getattr(actorstate.Session, name)
        ), name


def test_a_server_without_state_is_told_how_to_get_it() -> None:
    """A lifespan that yields something else is a programming error naming the fix."""
    with pytest.raises(
        RuntimeError, match=r"lifespan=actorstate\.mcp\.state_lifespan\(\.\.\.\).*yielded dict"
    ):
        state_context_of({})
    holder = SimpleNamespace(state_context=None)
    with pytest.raises(RuntimeError, match="yielded SimpleNamespace"):
        state_context_of(holder)
