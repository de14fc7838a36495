"""The README's example app (examples/shop_cart.py, included in the README verbatim), driven
by the official MCP client in process, as its users would test it."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

if TYPE_CHECKING:
    from types import ModuleType

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop_cart.py"


def _load_example(monkeypatch: pytest.MonkeyPatch, database: Path | None) -> ModuleType:
    """A fresh copy of the example module (its app reads SHOP_DB when it is made)."""
    if database is None:
        monkeypatch.delenv("SHOP_DB", raising=False)
    else:
        monkeypatch.setenv("SHOP_DB", str(database))
    spec = importlib.util.spec_from_file_location(f"shop_cart_{uuid.uuid4().hex}", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _ok(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def _error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


def test_the_readme_shows_the_example_verbatim() -> None:
    """The README's example app is examples/shop_cart.py, every line, in one python block."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks


async def test_concurrent_updates_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """51 add_to_cart calls at once on one cart: every one counted, none lost."""
    example = _load_example(monkeypatch, None)
    async with Client(example.app) as client:
        session_id = (await _ok(client, "create_session"))["sessionId"]
        async with anyio.create_task_group() as group:
            for _ in range(51):
                group.start_soon(
                    functools.partial(
                        _ok, client, "add_to_cart", sessionId=session_id, item="cup", quantity=1
                    )
                )
        cart = await _ok(client, "view_cart", sessionId=session_id)
    assert cart == {"cup": 51}


async def test_errors_reach_the_client_as_tool_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """actorstate's refusals arrive as isError results with their message, and the app keeps serving."""
    example = _load_example(monkeypatch, None)
    async with Client(example.app) as client:
        session_id = (await _ok(client, "create_session"))["sessionId"]
        unknown = str(uuid.uuid4())
        assert (await _error(client, "add_to_cart", sessionId=unknown, item="tea", quantity=1)).endswith(
            ": Session not found or expired"
        )
        assert (await _error(client, "view_cart", sessionId="cart-7")).endswith(
            ": session id must be a UUID, not 'cart-7'"
        )
        # InvalidInput raised inside the update: a tool error, and the cart is as it was.
        assert (await _error(client, "remove_from_cart", sessionId=session_id, item="tea")).endswith(
            ": 'tea' is not in the cart"
        )
        for line in range(example.MAX_LINES):
            await _ok(client, "add_to_cart", sessionId=session_id, item=f"item-{line}", quantity=1)
        assert (
            await _error(client, "add_to_cart", sessionId=session_id, item="one-more", quantity=1)
        ).endswith(f": the cart holds at most {example.MAX_LINES} different items; remove one first")
        # The ready-made tools answer in the ready-made server's words.
        assert await _error(client, "get_context", sessionId=unknown) == "Session not found or expired"
        await _ok(client, "end_session", sessionId=session_id)
        assert (await _error(client, "view_cart", sessionId=session_id)).endswith(
            ": Session not found or expired"
        )


async def test_carts_outlive_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With SHOP_DB set, a cart made before the app stopped is there when it starts again."""
    database = tmp_path / "shop.db"
    async with Client(_load_example(monkeypatch, database).app) as client:
        session_id = (await _ok(client, "create_session"))["sessionId"]
        await _ok(client, "add_to_cart", sessionId=session_id, item="tea", quantity=3)
    async with Client(_load_example(monkeypatch, database).app) as client:
        assert await _ok(client, "view_cart", sessionId=session_id) == {"tea": 3}


async def test_the_example_runs_as_a_program_over_stdio(tmp_path: Path) -> None:
    """`python examples/shop_cart.py` serves over stdio, as the README says, to the official client."""
    params = StdioServerParameters(
        command=sys.executable, args=[str(EXAMPLE)], env={**os.environ, "SHOP_DB": str(tmp_path / "shop.db")}
    )
    async with Client(params) as client:
        session_id = (await _ok(client, "create_session"))["sessionId"]
        assert await _ok(client, "add_to_cart", sessionId=session_id, item="tea", quantity=2) == {"tea": 2}
        assert (await _error(client, "add_to_cart", sessionId=session_id, item="tea", quantity=0)).startswith(
            "Error executing tool add_to_cart: 1 validation error"
        )


async def test_the_readmes_test_recipe_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's in-process test (the recipe users copy) passes against the example app."""
    readme = (ROOT / "README.md").read_text()
    (recipe,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
        if "async def test_a_cart_counts_every_item" in block
    ]
    namespace: dict[str, Any] = {"app": _load_example(monkeypatch, None).app}
    exec(compile(recipe, "README.md", "exec"), namespace)
    await namespace["test_a_cart_counts_every_item"]()
