"""A shop cart MCP server: its own tools on actorstate, next to three ready-made ones.

Run it over stdio with ``python examples/shop_cart.py`` (SHOP_DB names the
database file; memory only without it).
"""

import os
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from actorstate import InvalidInput
from actorstate.mcp import CallerSession, add_session_tools, state_lifespan

MAX_LINES = 20  # different items in one cart

app = MCPServer("shop-cart", lifespan=state_lifespan(os.environ.get("SHOP_DB")))
# A cart is a session: create_session opens one, end_session throws it away.
add_session_tools(app, ["create_session", "get_context", "end_session"])


@app.tool()
async def add_to_cart(
    sessionId: str, item: str, quantity: Annotated[int, Field(ge=1)], session: CallerSession
) -> dict[str, int]:
    """Put quantity of item in the cart; returns the whole cart."""

    def add(metadata: dict) -> dict[str, int]:
        cart = metadata.setdefault("cart", {})
        if item not in cart and len(cart) >= MAX_LINES:
            raise InvalidInput(f"the cart holds at most {MAX_LINES} different items; remove one first")
        cart[item] = cart.get(item, 0) + quantity
        return dict(cart)

    return await session.update(add)  # one turn: concurrent calls never lose an item


@app.tool()
async def remove_from_cart(sessionId: str, item: str, session: CallerSession) -> dict[str, int]:
    """Take item out of the cart; returns the whole cart."""

    def remove(metadata: dict) -> dict[str, int]:
        cart = metadata.setdefault("cart", {})
        if cart.pop(item, None) is None:
            raise InvalidInput(f"{item!r} is not in the cart")
        return dict(cart)

    return await session.update(remove)


@app.tool()
async def view_cart(sessionId: str, session: CallerSession) -> dict[str, int]:
    """The cart's items and quantities."""
    context = await session.context(max_turns=1)
    return context["metadata"].get("cart", {})


if __name__ == "__main__":
    app.run()  # stdio
