"""The tokens file: ``actorstate tokens add/list/revoke`` and the verifier the HTTP server asks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from actorstate.cli import main
from actorstate.errors import InvalidInput, TokensFileError
from actorstate.transport.tokens import (
    MAX_TOKEN_CHARS,
    TOKEN_PREFIX,
    TOKENS_FILE_ISSUER,
    Principal,
    TokensFile,
    add_token,
    list_tokens,
    load_tokens,
    revoke_token,
)

if TYPE_CHECKING:
    from pathlib import Path


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _entry(name: str, token: str = "", **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "sha256": _sha256(token or f"token-of-{name}"),
        "created": "2026-11-26T01:00:00+00:00",
        "operator": False,
    }
    entry.update(changes)
    return entry


def _write_file(path: Path, tokens: list[Any], format: object = 1) -> None:
    """Write a tokens file by hand, private as a server requires."""
    path.write_text(json.dumps({"format": format, "tokens": tokens}))
    path.chmod(0o600)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["tokens", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- the command -------------------------------------------------------------------


def test_cli_add_list_revoke_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """add prints the token alone on stdout; list shows name, created and operator; revoke removes
    the name; the file and its directory are created by the first add."""
    path = tmp_path / "new-dir" / "tokens.json"

    code, out, err = _cli(capsys, "add", "alice", "--tokens-file", str(path))
    assert code == 0
    token = out.strip()
    assert out == token + "\n"  # nothing else on stdout: `TOKEN=$(actorstate tokens add ...)` works
    assert token.startswith(TOKEN_PREFIX)
    assert "only this once" in err
    code, out, _ = _cli(capsys, "add", "ops.bot@team", "--operator", "--tokens-file", str(path))
    assert code == 0

    code, out, err = _cli(capsys, "list", "--tokens-file", str(path))
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert [line[0] for line in lines] == ["alice", "ops.bot@team"]
    assert [line[2] for line in lines] == ["-", "operator"]
    assert all(line[1].startswith("20") and "T" in line[1] for line in lines)  # an ISO time
    assert token not in out
    assert err.strip() == "2 tokens"

    code, _, err = _cli(capsys, "revoke", "alice", "--tokens-file", str(path))
    assert code == 0
    assert "revoked" in err
    _, out, _ = _cli(capsys, "list", "--tokens-file", str(path))
    assert [line.split()[0] for line in out.splitlines()] == ["ops.bot@team"]


def test_cli_takes_the_file_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ACTORSTATE_TOKENS_FILE names the file when --tokens-file is not given; the flag wins."""
    from_env = tmp_path / "env.json"
    from_flag = tmp_path / "flag.json"
    monkeypatch.setenv("ACTORSTATE_TOKENS_FILE", str(from_env))
    assert _cli(capsys, "add", "alice")[0] == 0
    assert _cli(capsys, "add", "bob", "--tokens-file", str(from_flag))[0] == 0
    assert [entry.name for entry in load_tokens(from_env)] == ["alice"]
    assert [entry.name for entry in load_tokens(from_flag)] == ["bob"]


def test_cli_without_a_file_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With neither --tokens-file nor the variable, tokens exits 2 with one line naming both."""
    monkeypatch.delenv("ACTORSTATE_TOKENS_FILE", raising=False)
    code, out, err = _cli(capsys, "list")
    assert code == 2
    assert out == ""
    assert "--tokens-file" in err
    assert "ACTORSTATE_TOKENS_FILE" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "alice"), "already has a token named 'alice'"),
        (("revoke", "carol"), "no token named 'carol'"),
        (("add", "two words"), "not allowed"),
        (("add", "x" * 65), "not allowed"),
    ],
)
def test_cli_refusals_are_one_line_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    """A second token for a name, revoking an unknown name and a bad name each exit 2 with one
    line saying what is wrong (no traceback) and leave the file as it was."""
    path = tmp_path / "tokens.json"
    add_token(path, "alice")
    before = path.read_bytes()
    code, out, err = _cli(capsys, *args, "--tokens-file", str(path))
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert path.read_bytes() == before


def test_cli_reports_a_malformed_file_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """list, add and revoke on a file that is not JSON exit 2 naming the file; add does not
    overwrite it."""
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    for args in (("list",), ("add", "alice"), ("revoke", "alice")):
        code, _, err = _cli(capsys, *args, "--tokens-file", str(path))
        assert code == 2
        assert f"{path} is not JSON" in err
        assert len(err.splitlines()) == 1
    assert path.read_text() == "{not json"


def test_cli_tokens_does_not_import_the_sdk(tmp_path: Path) -> None:
    """`actorstate tokens` runs without importing the MCP SDK or pydantic (it must start fast)."""
    script = (
        "import sys\n"
        "from actorstate.cli import main\n"
        f"assert main(['tokens', 'add', 'alice', '--tokens-file', {str(tmp_path / 't.json')!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'mcp', 'pydantic', 'pydantic_core'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"


# -- the file ----------------------------------------------------------------------


def test_file_keeps_only_the_hash_with_mode_0600(tmp_path: Path) -> None:
    """The file holds the token's SHA-256, never the token, and is readable by its owner alone,
    after an add and after a revoke (each rewrites it)."""
    path = tmp_path / "tokens.json"
    token = add_token(path, "alice")
    other = add_token(path, "bob", operator=True)
    text = path.read_text()
    assert token not in text
    assert token.removeprefix(TOKEN_PREFIX) not in text
    assert _sha256(token) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(text) == {
        "format": 1,
        "tokens": [
            {
                "name": "alice",
                "sha256": _sha256(token),
                "created": json.loads(text)["tokens"][0]["created"],
                "operator": False,
            },
            {
                "name": "bob",
                "sha256": _sha256(other),
                "created": json.loads(text)["tokens"][1]["created"],
                "operator": True,
            },
        ],
    }
    revoke_token(path, "alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in list_tokens(path)] == ["bob"]
    # No temporary file is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json", "tokens.json.lock"]


def test_tokens_are_random_and_distinct(tmp_path: Path) -> None:
    """Each add makes a new token of the prefix and 32 random bytes (43 URL-safe characters)."""
    path = tmp_path / "tokens.json"
    tokens = [add_token(path, f"user{i}") for i in range(20)]
    assert len(set(tokens)) == 20
    assert all(len(token) == len(TOKEN_PREFIX) + 43 for token in tokens)


def test_add_refuses_a_bad_name_before_touching_the_file(tmp_path: Path) -> None:
    """A name outside 1-64 of [A-Za-z0-9._@-] raises InvalidInput and creates no file."""
    path = tmp_path / "tokens.json"
    for name in ("", "a b", "a|b", "é", "x" * 65, "a\n"):
        with pytest.raises(InvalidInput, match="not allowed"):
            add_token(path, name)
    assert not path.exists()


def test_concurrent_adds_from_threads_all_land(tmp_path: Path) -> None:
    """Eight threads adding ten names each at once lose none: the read-modify-write is locked."""
    path = tmp_path / "tokens.json"
    start = threading.Barrier(8)
    tokens: dict[str, str] = {}

    def add_ten(worker: int) -> None:
        start.wait()
        for i in range(10):
            name = f"w{worker}-{i}"
            tokens[name] = add_token(path, name)

    threads = [threading.Thread(target=add_ten, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = load_tokens(path)
    assert sorted(entry.name for entry in entries) == sorted(tokens)
    assert len(entries) == 80
    verifier = TokensFile(path)
    assert all(
        verifier.verify(token) == Principal(TOKENS_FILE_ISSUER, name, name) for name, token in tokens.items()
    )


def test_concurrent_adds_from_two_processes_all_land(tmp_path: Path) -> None:
    """Two processes (two shells) adding 40 names each at once lose none."""
    path = tmp_path / "tokens.json"
    script = (
        "import sys\n"
        "from actorstate.transport.tokens import add_token\n"
        "for i in range(40):\n"
        "    add_token(sys.argv[1], f'{sys.argv[2]}-{i}')\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), prefix]) for prefix in ("left", "right")
    ]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    names = {entry.name for entry in load_tokens(path)}
    assert names == {f"{prefix}-{i}" for prefix in ("left", "right") for i in range(40)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist (create it with: actorstate tokens add"),
        ("", "is not JSON"),
        ("{not json", "is not JSON"),
        ("[]", "is not a tokens file"),
        ('{"tokens": []}', "has format None; this actorstate reads format 1"),
        ('{"format": 2, "tokens": []}', "has format 2; this actorstate reads format 1"),
        ('{"format": 1}', 'has no "tokens" list'),
        ('{"format": 1, "tokens": {}}', 'has no "tokens" list'),
        ([7], "tokens[0] is not an object"),
        ([{"name": "alice"}], "tokens[0] has no created, operator, sha256"),
        ([_entry("alice", secret="x")], "tokens[0] has unknown field(s) secret"),
        ([_entry("a b")], "tokens[0]: name 'a b' is not 1 to 64"),
        ([_entry("alice", sha256="ABC")], "tokens[0] (alice): sha256 is not 64 lowercase hex digits"),
        ([_entry("alice", sha256=_sha256("t").upper())], "(alice): sha256 is not 64 lowercase hex"),
        ([_entry("alice", created="yesterday")], "(alice): created 'yesterday' is not an ISO 8601 time"),
        ([_entry("alice", created=5)], "(alice): created is not an ISO 8601 time"),
        ([_entry("alice", operator="yes")], "(alice): operator is not true or false"),
        ([_entry("alice"), _entry("bob"), _entry("alice", "other")], "names 'alice' twice"),
        ([_entry("alice", "same"), _entry("bob", "same")], "the same sha256 twice (the second at 'bob')"),
    ],
)
def test_each_malformed_file_gets_its_own_clear_error(
    tmp_path: Path, content: str | list[Any] | None, message: str
) -> None:
    """Loading names the file and exactly what is wrong with it; the verifier refuses to start on it."""
    path = tmp_path / "tokens.json"
    if isinstance(content, str):
        path.write_text(content)
        path.chmod(0o600)
    elif content is not None:
        _write_file(path, content)
    with pytest.raises(TokensFileError) as raised:
        load_tokens(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)
    with pytest.raises(TokensFileError, match="tokens"):
        TokensFile(path)


def test_a_valid_hand_written_file_loads(tmp_path: Path) -> None:
    """A file written by hand in the documented shape (a Z time, an operator) is accepted as is."""
    path = tmp_path / "tokens.json"
    _write_file(path, [_entry("alice", "a-token", created="2026-11-26T01:00:00Z", operator=True)])
    verifier = TokensFile(path)
    entry = verifier.lookup("a-token")
    assert entry is not None
    assert entry.operator
    assert entry.principal == Principal(TOKENS_FILE_ISSUER, "alice", "alice")


# -- verifying and reloading -------------------------------------------------------


def test_verify_accepts_the_printed_token_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The token add printed verifies as its principal; a changed, truncated, empty or other
    name's token does not verify as it, and the operator flag is the one given at add."""
    path = tmp_path / "tokens.json"
    _, out, _ = _cli(capsys, "add", "alice", "--tokens-file", str(path))
    token = out.strip()
    bob = add_token(path, "bob", operator=True)
    verifier = TokensFile(path)

    assert verifier.verify(token) == Principal("tokens-file", "alice", "alice")
    assert verifier.verify(bob) == Principal("tokens-file", "bob", "bob")
    alice_entry, bob_entry = verifier.lookup(token), verifier.lookup(bob)
    assert alice_entry is not None
    assert not alice_entry.operator
    assert bob_entry is not None
    assert bob_entry.operator
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    for wrong in (changed, token[:-1], token + " ", " " + token, "", TOKEN_PREFIX, _sha256(token), "\ud800"):
        assert verifier.verify(wrong) is None, wrong


def test_verify_refuses_an_over_long_token_even_if_listed(tmp_path: Path) -> None:
    """A token longer than MAX_TOKEN_CHARS is refused before it is hashed, even when its hash
    is in the file (so a client cannot make the server hash megabytes)."""
    path = tmp_path / "tokens.json"
    at_limit, over = "a" * MAX_TOKEN_CHARS, "b" * (MAX_TOKEN_CHARS + 1)
    _write_file(path, [_entry("long", at_limit), _entry("longer", over)])
    verifier = TokensFile(path)
    assert verifier.verify(at_limit) == Principal(TOKENS_FILE_ISSUER, "long", "long")
    assert verifier.verify(over) is None


def test_reload_picks_up_an_add_and_a_revoke(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A loaded verifier sees a token added and stops accepting one revoked once reloaded, and
    logs how many tokens it now holds."""
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice")
    verifier = TokensFile(path)
    bob = add_token(path, "bob")
    assert verifier.verify(bob) is None  # not until the reload
    revoke_token(path, "alice")
    assert verifier.verify(alice) is not None
    with caplog.at_level(logging.INFO, logger="actorstate.transport.tokens"):
        assert verifier.reload()
    assert verifier.verify(bob) == Principal(TOKENS_FILE_ISSUER, "bob", "bob")
    assert verifier.verify(alice) is None
    assert len(verifier) == 1
    assert f"loaded 1 tokens from {path}" in caplog.messages


@pytest.mark.parametrize(
    "damage",
    ["truncate", "not-json", "duplicate", "delete"],
)
def test_reload_of_a_bad_file_keeps_the_old_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A reload of a file that turned bad (cut short, not JSON, a duplicate name, deleted) keeps
    accepting the tokens loaded before, returns False and warns with the reason; a later good
    reload takes the file again."""
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice")
    verifier = TokensFile(path)
    good = path.read_text()
    if damage == "truncate":
        path.write_text(good[: len(good) // 2])
    elif damage == "not-json":
        path.write_text("format = 1\n")
    elif damage == "duplicate":
        document = json.loads(good)
        document["tokens"].append(dict(document["tokens"][0], sha256=_sha256("x")))
        path.write_text(json.dumps(document))
    else:
        os.unlink(path)
    with caplog.at_level(logging.WARNING, logger="actorstate.transport.tokens"):
        assert not verifier.reload()
    assert verifier.verify(alice) == Principal(TOKENS_FILE_ISSUER, "alice", "alice")
    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.getMessage().startswith("kept the 1 tokens loaded before:")
    assert str(path) in warning.getMessage()

    path.write_text(good)
    path.chmod(0o600)
    bob = add_token(path, "bob")
    assert verifier.reload()
    assert verifier.verify(bob) is not None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
def test_a_server_refuses_a_tokens_file_others_may_read_or_write(tmp_path: Path, mode: int) -> None:
    """A tokens file its group or others may read or write is refused at load, naming the file,
    its mode and the chmod that mends it; 0600 and 0400 load."""
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice")
    path.chmod(mode)
    with pytest.raises(TokensFileError) as raised:
        TokensFile(path)
    assert f"{path} has mode {mode:04o}" in str(raised.value)
    assert f"chmod 600 {path}" in str(raised.value)
    for private in (0o600, 0o400):
        path.chmod(private)
        assert TokensFile(path).verify(alice) == Principal(TOKENS_FILE_ISSUER, "alice", "alice")


def test_a_reload_keeps_the_old_tokens_when_the_file_is_no_longer_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file made readable by others after the server started is not taken at a reload (a
    warning says why); once private again it is."""
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice")
    verifier = TokensFile(path)
    bob = add_token(path, "bob")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="actorstate.transport.tokens"):
        assert not verifier.reload()
    assert "has mode 0644" in caplog.text
    assert verifier.verify(bob) is None
    assert verifier.verify(alice) is not None
    path.chmod(0o600)
    assert verifier.reload()
    assert verifier.verify(bob) is not None


def test_add_makes_a_loose_file_private(tmp_path: Path) -> None:
    """tokens add rewrites a hand-made file that others could read as 0600, so the server takes it."""
    path = tmp_path / "tokens.json"
    _write_file(path, [_entry("alice")])
    path.chmod(0o644)
    bob = add_token(path, "bob")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TokensFile(path).verify(bob) == Principal(TOKENS_FILE_ISSUER, "bob", "bob")


def test_serve_refuses_to_start_on_a_tokens_file_others_may_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`actorstate serve --http --tokens-file` on a group-readable file exits with status 2 and
    one line saying why and how to mend it, before listening."""
    path = tmp_path / "tokens.json"
    add_token(path, "alice")
    path.chmod(0o640)
    code = main(["serve", "--http", "127.0.0.1:0", "--durability", "memory", "--tokens-file", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert "has mode 0640" in err
    assert f"chmod 600 {path}" in err


# -- principals --------------------------------------------------------------------


def test_principal_keys_are_one_to_one() -> None:
    """Principals that differ in any part have different keys, even when parts contain the
    separator or the escape character; a tokens-file key reads plainly."""
    assert Principal(TOKENS_FILE_ISSUER, "alice", "alice").key == "tokens-file|alice|alice"
    assert Principal("https://id.example.com", "user@x", "app").key == "https://id.example.com|user@x|app"
    principals = [
        Principal("a", "b|c", "d"),
        Principal("a", "b", "c|d"),
        Principal("a|b", "c", "d"),
        Principal("a", "b%7Cc", "d"),
        Principal("a", "b", "c%7Cd"),
        Principal(TOKENS_FILE_ISSUER, "alice", "alice"),
        Principal(TOKENS_FILE_ISSUER + "|alice", "alice", ""),
        Principal("tokens-file", "alice|alice", ""),
    ]
    keys = [principal.key for principal in principals]
    assert len(set(keys)) == len(keys), keys


@pytest.mark.anyio
async def test_a_verified_token_is_refused_once_a_reload_revoked_it(tmp_path: Path) -> None:
    """The verifier keeps the tokens it accepted, but a reload forgets them: after ``tokens revoke``
    and a reload, the same token is refused; a refused token is never kept."""
    from actorstate.transport.authentication import TokensFileVerifier

    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice")
    bob = add_token(path, "bob")
    verifier = TokensFileVerifier(TokensFile(path))
    assert await verifier.verify_token("not-a-token") is None
    first = await verifier.verify_token(alice)
    assert first is not None
    assert await verifier.verify_token(alice) is first  # kept: no second lookup
    revoke_token(path, "alice")
    assert await verifier.verify_token(alice) is first  # not re-read until a reload
    assert verifier.reload()
    assert await verifier.verify_token(alice) is None
    verified_bob = await verifier.verify_token(bob)
    assert verified_bob is not None
    assert verified_bob.subject == "bob"


@pytest.mark.anyio
async def test_a_lookup_racing_a_reload_does_not_keep_a_revoked_token(tmp_path: Path) -> None:
    """A reload (on its worker thread) that revokes alice's token while a verification of it is
    between its lookup in the old table and keeping the answer: the answer is not kept past the
    reload, so the next verification refuses the token."""
    from actorstate.transport.authentication import TokensFileVerifier

    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice")
    tokens = TokensFile(path)
    verifier = TokensFileVerifier(tokens)
    revoke_token(path, "alice")
    lookup = tokens.lookup

    def lookup_then_reload(token: str) -> Any:
        found = lookup(token)  # the old table: alice's token is still in it
        assert verifier.reload()  # the reload lands now, before the answer is kept
        return found

    tokens.lookup = lookup_then_reload  # type: ignore[method-assign]
    assert await verifier.verify_token(alice) is not None  # verified under the old table
    tokens.lookup = lookup  # type: ignore[method-assign]
    assert await verifier.verify_token(alice) is None
