"""``actorstate serve --http`` as a user runs it: a tokens file made with ``actorstate tokens``,
a real server process, the SDK's client; SIGHUP reloads the tokens, SIGTERM stops it with exit 0,
and a restart keeps every session."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx2
import pytest

from actorstate.cli import main
from tests.transport.test_http import call, client

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)
LISTENING = re.compile(r"serving MCP over HTTP at (http://\S+)")
START_TIMEOUT = 60.0


class Server:
    """One ``actorstate serve --http`` process; its URL once it listens, and its stderr.

    Its database is ``db`` (a file or a ``postgresql://`` URL), or ``state.db`` in ``tmp_path``.
    """

    def __init__(self, tmp_path: Path, *extra: str, db: str | None = None) -> None:
        self.log_path = tmp_path / f"serve-{time.monotonic_ns()}.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actorstate",
                "serve",
                "--http",
                "127.0.0.1:0",
                "--db",
                db or str(tmp_path / "state.db"),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.process.stderr is not None
        self.stderr = b""
        self.url = self._wait_for(LISTENING).group(1)

    def _wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """Read stderr until ``pattern`` shows (the server logs as it goes)."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = pattern.search(self.stderr.decode(errors="replace"))
            if found:
                return found
            ready, _, _ = select.select([self.process.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(self.process.stderr.fileno(), 65536)
                if not chunk:
                    break
                self.stderr += chunk
        raise AssertionError(
            f"the server never logged {pattern.pattern!r}; its stderr:\n{self.stderr.decode()}"
        )

    def signal(self, signum: int, then_logged: str) -> None:
        """Send ``signum`` and wait until the server logs ``then_logged`` (counting new lines only)."""
        seen = self.stderr.decode(errors="replace").count(then_logged)
        self.process.send_signal(signum)
        self._wait_for(re.compile(f"(?:.*{re.escape(then_logged)}){{{seen + 1}}}", re.DOTALL))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=60)
        self.stderr += rest
        return self.process.returncode


def add_token(tokens_file: Path, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["tokens", "add", name, "--tokens-file", str(tokens_file)]) == 0
    return capsys.readouterr().out.strip()


@pytest.mark.slow
@pytest.mark.anyio
async def test_tokens_reload_on_sighup_and_sessions_survive_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alice's token works and bob's is refused; after `tokens add bob` and SIGHUP, bob's works;
    after `tokens revoke alice` and SIGHUP, alice's is refused. SIGTERM exits 0, and a new token
    for alice on a restarted server still reaches her session with its counter."""
    tokens = tmp_path / "tokens.json"
    alice = add_token(tokens, "alice", capsys)
    server = Server(tmp_path, "--tokens-file", str(tokens))
    try:
        async with client(server.url, alice) as session:
            _, created = await call(session, "create_session", {})
            _, counted = await call(session, "increment_counter", {"sessionId": created["sessionId"]})
            assert counted["value"] == 1
        bob = add_token(tokens, "bob", capsys)
        assert await status_of(server.url, bob) == 401  # not loaded yet
        server.signal(signal.SIGHUP, "loaded 2 tokens")
        assert await status_of(server.url, bob) == 200
        assert main(["tokens", "revoke", "alice", "--tokens-file", str(tokens)]) == 0
        server.signal(signal.SIGHUP, "loaded 1 tokens")
        assert await status_of(server.url, alice) == 401
    finally:
        code = server.stop()
    assert code == 0, server.stderr.decode()
    assert "everything acknowledged is stored" in server.stderr.decode()

    alice_again = add_token(tokens, "alice", capsys)
    server = Server(tmp_path, "--tokens-file", str(tokens))
    try:
        async with client(server.url, alice_again) as session:
            _, context = await call(session, "get_context", {"sessionId": created["sessionId"]})
            assert context["metadata"]["counter"] == 1
    finally:
        assert server.stop() == 0


async def status_of(url: str, token: str) -> int:
    """The HTTP status of one sessionless tools/list with ``token``."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            }
        },
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/list",
    }
    async with httpx2.AsyncClient() as http:
        reply = await http.post(url, json=body, headers=headers)
    assert reply.status_code in (200, 401), reply.text
    return reply.status_code


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--http", "0.0.0.0:8000"], "refusing to serve HTTP on 0.0.0.0 without authentication"),
        (["--http", "localhost"], "--http must be HOST:PORT"),
        (["--http", "127.0.0.1:99999"], "--http must be HOST:PORT"),
        (["--tokens-file", "t.json"], "add --http HOST:PORT"),
        (["--http", "127.0.0.1:0", "--tokens-file", "missing.json"], "missing.json"),
        (["--http", "127.0.0.1:0", "--max-connections", "0"], "must be positive"),
        (
            ["--http", "127.0.0.1:0", "--max-protocol-sessions", "0"],
            "--max-protocol-sessions must be at least 1",
        ),
        (
            ["--http", "127.0.0.1:0", "--max-protocol-sessions-per-client", "0"],
            "--max-protocol-sessions-per-client must be at least 1",
        ),
        (["--jwt-issuer", "https://id.example.com"], "--jwt-issuer is for serving HTTP"),
        (["--http", "127.0.0.1:0", "--jwt-key", "k.pem"], "need --jwt-issuer"),
        (
            ["--http", "127.0.0.1:0", "--jwt-issuer", "https://id.example.com", "--jwt-key", "k.pem"],
            "--jwt-audience",
        ),
        (
            ["--http", "127.0.0.1:0", "--tokens-file", "t.json", "--jwt-issuer", "https://i.example"],
            "not both",
        ),
        (
            [
                "--http",
                "127.0.0.1:0",
                "--jwt-issuer",
                "https://id.example.com",
                "--jwt-audience",
                "a",
                "--jwt-key",
                "k.pem",
            ],
            "k.pem",
        ),
    ],
)
def test_bad_http_flags_are_refused_in_one_line(
    flags: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each unusable HTTP setting stops serve with exit status 2 and one line saying what to do."""
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--durability", "memory", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1, err


@pytest.mark.slow
@pytest.mark.anyio
async def test_serve_takes_jwts_from_the_issuer_it_names(tmp_path: Path) -> None:
    """With --jwt-issuer, --jwt-audience and --jwt-key, a token that issuer signed for that audience
    is served; the same token expired, or for another audience, gets 401."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    issuer, audience = "https://id.example.com", "actorstate-tests"

    def token(**claims: object) -> str:
        now = int(time.time())
        payload = {"iss": issuer, "aud": audience, "sub": "alice", "iat": now, "exp": now + 600, **claims}
        return jwt.encode(payload, key, algorithm="RS256")

    server = Server(
        tmp_path,
        "--jwt-issuer",
        issuer,
        "--jwt-audience",
        audience,
        "--jwt-key",
        str(pem),
        "--durability",
        "memory",
    )
    try:
        assert await status_of(server.url, token()) == 200
        assert await status_of(server.url, token(exp=int(time.time()) - 3600)) == 401
        assert await status_of(server.url, token(aud="someone-else")) == 401
    finally:
        assert server.stop() == 0
