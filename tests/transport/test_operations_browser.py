"""The operator page in a real browser: headless Chromium (Debian's, driven by Playwright) against
a real ``actorstate serve --http`` process with a tokens file, on each backend. Without a token
the page shows the API's refusal; with an operator's its charts move while calls run; a session
found by its principal shows its events; ending it from the page (confirmed) makes the owner's
next call answer "Session not found or expired". No request leaves the server's origin."""

from __future__ import annotations

import json
import shutil
import threading
from typing import TYPE_CHECKING, Any

import httpx2
import pytest

from actorstate.cli import main
from tests.transport.test_http_serve import Server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A timeout for the page to catch up, never a measurement.
WAIT_MS = 30_000
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
}
NOT_FOUND = "Session not found or expired"


def tool_call(http: httpx2.Client, url: str, token: str, name: str, **arguments: Any) -> dict[str, Any]:
    """One sessionless tools/call over plain HTTP: the result (structuredContent, or the error text)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": META},
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
    }
    reply = http.post(url, json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = json.loads(reply.text)["result"]
    if result.get("isError"):
        return {"error": result["content"][0]["text"]}
    return dict(result["structuredContent"])


@pytest.fixture(params=["asyncio", "trio"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Server, str, str]]:
    """A real server on ``--backend PARAM`` with alice's token and an operator's: (server, alice, operator)."""
    tokens = tmp_path / "tokens.json"
    made = []
    for name, extra in (("alice", []), ("ops", ["--operator"])):
        assert main(["tokens", "add", name, "--tokens-file", str(tokens), *extra]) == 0
        made.append(capsys.readouterr().out.strip())
    server = Server(tmp_path, "--tokens-file", str(tokens), "--backend", request.param, "--drain-period", "0")
    try:
        yield server, made[0], made[1]
    finally:
        assert server.stop() == 0, server.stderr.decode()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium from the machine's package (Playwright's own browsers are not downloaded)."""
    if CHROMIUM is None:
        pytest.fail("the browser tests need Chromium: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Any, base: str, foreign: list[str]) -> Any:
    """The operator page, every request to another origin aborted and recorded in ``foreign``.

    Its Content-Security-Policy is bypassed for the test's own probes (Playwright evaluates
    them as strings, which the policy forbids); the policy itself is checked over HTTP."""
    page = browser.new_page(bypass_csp=True)

    def route(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.goto(base + "/admin?interval=200")
    return page


def test_the_page_refuses_without_an_operators_token(server: tuple[Server, str, str], browser: Any) -> None:
    """Without a token the page asks for one and shows no figures; with alice's (no operator)
    it shows the API's refusal naming how to get an operator's token."""
    process, alice, _ = server
    base = process.url.removesuffix("/mcp")
    foreign: list[str] = []
    page = open_page(browser, base, foreign)
    assert page.locator("#status").inner_text() == "Paste an operator's token to begin."
    assert page.locator("body").get_attribute("data-polls") == "0"
    page.fill("#token", alice)
    page.click("#token-form button")
    page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('Refused')", timeout=WAIT_MS
    )
    assert "actorstate tokens add NAME --operator" in page.locator("#status").inner_text()
    assert page.locator("body").get_attribute("data-polls") == "0"
    assert foreign == []


def test_charts_move_under_load_and_a_session_is_found_viewed_and_ended(
    server: tuple[Server, str, str], browser: Any
) -> None:
    """With the operator's token the calls chart shows a positive rate while alice's calls run;
    searching alice's principal lists her session, its view shows the action she recorded, and
    ending it (the confirmation accepted) makes her next call answer "Session not found or
    expired"; nothing was fetched from another origin."""
    process, alice, operator = server
    base = process.url.removesuffix("/mcp")
    foreign: list[str] = []
    with httpx2.Client() as http:
        created = tool_call(http, process.url, alice, "create_session")
        session_id = created["sessionId"]
        tool_call(
            http,
            process.url,
            alice,
            "record_action",
            sessionId=session_id,
            action="checkout",
            details="cart=3",
        )

        page = open_page(browser, base, foreign)
        page.fill("#token", operator)
        page.click("#token-form button")
        page.wait_for_function("Number(document.body.dataset.polls) >= 2", timeout=WAIT_MS)

        stop = threading.Event()

        def load() -> None:
            with httpx2.Client() as loader:
                while not stop.is_set():
                    tool_call(loader, process.url, alice, "increment_counter", sessionId=session_id)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            page.wait_for_function(
                "Number(document.getElementById('chart-calls').dataset.calls) > 0", timeout=WAIT_MS
            )
        finally:
            stop.set()
            loader.join()
        assert float(page.locator("#chart-resident").get_attribute("data-resident") or 0) >= 1
        assert float(page.locator("#chart-memory").get_attribute("data-rss") or 0) > 0

        page.fill("#principal", "tokens-file|alice|alice")
        page.click("#search-form button")
        link = page.locator(f"#sessions a[href='#{session_id}']")
        link.wait_for(timeout=WAIT_MS)
        link.click()
        page.locator("#session-view").wait_for(timeout=WAIT_MS)
        assert page.locator("#view-id").inner_text() == session_id
        assert "checkout" in page.locator("#view-events").inner_text()
        assert '"counter"' in page.locator("#view-metadata").inner_text()

        dialogs: list[str] = []

        def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)
        page.click("#end-session")
        page.wait_for_function(
            "document.getElementById('notice').textContent.includes('ended')", timeout=WAIT_MS
        )
        assert len(dialogs) == 1
        assert session_id in dialogs[0]
        assert NOT_FOUND in tool_call(http, process.url, alice, "get_context", sessionId=session_id)["error"]
    assert foreign == []


def test_the_page_is_served_whole_by_the_process(server: tuple[Server, str, str]) -> None:
    """/admin, its script and its style are served without a token, under a policy that allows
    only this origin, and name nothing on another host."""
    process, _, _ = server
    base = process.url.removesuffix("/mcp")
    with httpx2.Client() as http:
        for path, kind in (
            ("/admin", "text/html"),
            ("/admin/page.js", "text/javascript"),
            ("/admin/page.css", "text/css"),
        ):
            reply = http.get(base + path)
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith(kind)
            assert reply.headers["content-security-policy"].startswith("default-src 'self'")
            assert "http://" not in reply.text
            assert "https://" not in reply.text
