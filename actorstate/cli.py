"""The ``actorstate`` command: ``serve``, ``sessions``, ``doctor``, ``chaos``, ``tokens``.

Every ``serve`` flag can also come from an ``ACTORSTATE_*`` environment
variable (the flag wins). Every command that takes a database finds it the
same way (``locations.find_database``: ``--db``, ``ACTORSTATE_DB``, the data
directory). Logs go to stderr; stdout belongs to the protocol.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ActorStateError, DatabaseRefused, StoreError
from .locations import (
    DATABASE_VARIABLE,
    DatabaseLocation,
    default_database,
    find_database,
    is_postgres_url,
    shown_location,
)

if TYPE_CHECKING:
    from .store.view import SessionRow
    from .transport.registry import RegistryLimits

# Only what every command needs is imported above. serve's runtime, the MCP
# SDK, the HTTP stack and the store's modules are imported by the functions
# that use them, so that `--version`, `sessions`, `doctor` and `tokens` start
# without them (tests/test_cli_imports.py holds this). The package's own
# __init__ still imports the runtime (actorstate.state, anyio, asyncio): most
# of what these commands spend starting is that, not this module.

logger = logging.getLogger("actorstate.cli")

# Seconds a thread may hold the GIL while another waits for it, in the server (see _serve).
SERVE_SWITCH_INTERVAL = 0.001


# flag, type, help (the environment variable is derived from the flag; the
# default comes from _serve_defaults, only when serve runs)
_SERVE_OPTIONS: list[tuple[str, type, str]] = [
    (
        "--db",
        str,
        f"SQLite database file, or a PostgreSQL database's postgresql:// URL "
        f"(default: {default_database()}) [{DATABASE_VARIABLE}]",
    ),
    (
        "--node-id",
        str,
        "PostgreSQL: this node's name in the session rows it owns (default: host:pid:random); "
        "restarted under its name, a node takes its sessions back at once",
    ),
    (
        "--lease-duration",
        float,
        "PostgreSQL: seconds a session stays this node's after its last claim, write or renewal",
    ),
    ("--durability", str, "commit | interval | memory"),
    ("--max-resident", int, "actors kept in memory"),
    ("--memory-budget-mb", float, "memory budget for sessions"),
    ("--idle-timeout", float, "seconds before an idle actor leaves memory"),
    ("--session-ttl", float, "seconds of inactivity before a session ends"),
    ("--flush-interval", float, "interval mode: seconds between flushes"),
    ("--max-line-bytes", int, "longest JSON-RPC line accepted"),
    ("--max-in-flight", int, "unanswered requests before reading pauses"),
    ("--stop-grace", float, "seconds to answer requests read before a stop"),
    ("--backend", str, "trio | asyncio"),
    ("--fast-path", str, "on | off: answer tools/call without the SDK's per-request dispatch"),
    ("--log-level", str, "DEBUG | INFO | WARNING | ERROR"),
    ("--http", str, "serve MCP over Streamable HTTP on HOST:PORT instead of stdio"),
    ("--tokens-file", str, "HTTP: accept this file's bearer tokens (actorstate tokens; reloaded on SIGHUP)"),
    (
        "--jwt-issuer",
        str,
        "HTTP: accept JWTs from this issuer (an http(s) URL); with --jwt-key or --jwt-jwks",
    ),
    ("--jwt-audience", str, "HTTP: the audience the JWTs must name (default: the public URL)"),
    ("--jwt-key", str, "HTTP: the issuer's public key, a PEM file (reloaded on SIGHUP)"),
    ("--jwt-jwks", str, "HTTP: the issuer's keys, a JWKS file (reloaded on SIGHUP)"),
    ("--public-url", str, "HTTP: the endpoint's URL as clients reach it (default http://HOST:PORT/mcp)"),
    ("--max-connections", int, "HTTP: exchanges open at once, all clients"),
    ("--max-in-flight-per-client", int, "HTTP: exchanges open at once per client"),
    ("--rate-limit", float, "HTTP: requests per second per client (bursts of twice that)"),
    ("--max-protocol-sessions", int, "HTTP: the older protocol's sessions held at once (503 past it)"),
    (
        "--drain-period",
        float,
        "HTTP: seconds /readyz answers 503 before a stop ends intake (once /readyz was probed)",
    ),
    ("--metrics-access", str, "HTTP with tokens: who may read /metrics: operator | open"),
    ("--metrics-principals", str, "on | off: /metrics names each HTTP principal (else sums them)"),
    (
        "--metrics",
        str,
        "stdio: answer /healthz, /readyz and /metrics over HTTP on HOST:PORT (loopback only by default)",
    ),
    ("--metrics-remote", str, "on | off: let --metrics listen beyond loopback (it has no authentication)"),
    (
        "--max-protocol-sessions-per-client",
        int,
        "HTTP: the older protocol's sessions one client may hold (429 past it)",
    ),
]


def _serve_defaults() -> dict[str, Any]:
    """serve's defaults, from the modules that own them (imported only when serve runs).

    A flag not named here defaults to None.
    """
    from .config import Config
    from .transport.limits import (
        DEFAULT_MAX_IN_FLIGHT,
        DEFAULT_MAX_LINE_BYTES,
        DEFAULT_MAX_PROTOCOL_SESSIONS,
        DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT,
        DEFAULT_STOP_GRACE,
    )
    from .transport.operations import OperationsSettings
    from .transport.registry import RegistryLimits

    config = Config()
    operations = OperationsSettings()
    http = RegistryLimits()
    return {
        "--durability": "commit",
        "--max-resident": config.max_resident,
        "--memory-budget-mb": config.memory_budget_mb,
        "--idle-timeout": config.idle_timeout,
        "--session-ttl": config.session_ttl,
        "--flush-interval": config.flush_interval,
        "--lease-duration": config.lease_duration,
        "--max-line-bytes": DEFAULT_MAX_LINE_BYTES,
        "--max-in-flight": DEFAULT_MAX_IN_FLIGHT,
        "--stop-grace": DEFAULT_STOP_GRACE,
        "--backend": "asyncio",
        "--fast-path": "on",
        "--log-level": "INFO",
        "--max-connections": http.max_connections,
        "--max-in-flight-per-client": http.max_in_flight,
        "--rate-limit": http.rate,
        "--max-protocol-sessions": DEFAULT_MAX_PROTOCOL_SESSIONS,
        "--drain-period": operations.drain_period,
        "--metrics-access": operations.metrics_access,
        "--metrics-principals": "on" if operations.metrics_principals else "off",
        "--metrics-remote": "off",
        "--max-protocol-sessions-per-client": DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT,
    }


_CHOICES = {
    "--durability": ("commit", "interval", "memory"),
    "--backend": ("trio", "asyncio"),
    "--fast-path": ("on", "off"),
    "--metrics-access": ("operator", "open"),
    "--metrics-principals": ("on", "off"),
    "--metrics-remote": ("on", "off"),
    "--log-level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}


def _env_name(flag: str) -> str:
    return "ACTORSTATE_" + flag.removeprefix("--").replace("-", "_").upper()


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the session tools over MCP on stdio (or HTTP with --http)",
        description="Serve the session tools over MCP on stdin/stdout, or over Streamable HTTP "
        "with --http HOST:PORT (bearer tokens with --tokens-file; without them, loopback only). "
        "Each flag may also be set with the environment variable shown.",
    )
    for flag, kind, text in _SERVE_OPTIONS:
        # Unset flags stay None here; _serve_settings fills them from the
        # environment or the default, so a bad variable troubles only serve.
        if flag == "--db":
            serve.add_argument(flag, metavar="PATH|URL", help=text)
            continue
        serve.add_argument(flag, type=kind, default=None, help=f"{text} [{_env_name(flag)}]")


def _serve_settings(args: argparse.Namespace) -> None:
    """Fill unset serve flags from ACTORSTATE_* variables, then defaults; check them all.

    The database is found as every command finds it (``find_database``):
    ``args.location`` says where it is and what named it.
    """
    defaults = _serve_defaults()
    for flag, kind, _ in _SERVE_OPTIONS:
        if flag == "--db":
            continue
        default = defaults.get(flag)
        name = flag.removeprefix("--").replace("-", "_")
        value = getattr(args, name)
        source = flag
        if value is None:
            env = _env_name(flag)
            raw = os.environ.get(env)
            if raw is None:
                value = default
            else:
                source = env
                try:
                    value = kind(raw)
                except ValueError:
                    raise ValueError(f"{env}={raw!r} is not a valid {kind.__name__}") from None
        choices = _CHOICES.get(flag)
        if choices is not None:
            value = value.upper() if flag == "--log-level" else value
            if value not in choices:
                raise ValueError(f"{source} must be one of {', '.join(choices)}, not {value!r}")
        if flag == "--max-line-bytes" and value < 1024:
            raise ValueError(f"{source} must be at least 1024 bytes, not {value}")
        if flag == "--max-in-flight" and value < 1:
            raise ValueError(f"{source} must be at least 1, not {value}")
        if flag in ("--stop-grace", "--drain-period") and not value >= 0:  # not NaN either
            raise ValueError(f"{source} must be a number of seconds, 0 or more, not {value}")
        setattr(args, name, value)
    if args.metrics is not None:
        if args.http is not None:
            raise ValueError(
                "--metrics is for a stdio server: with --http, /healthz, /readyz and /metrics are on "
                "the HTTP server itself"
            )
        args.metrics_address = _http_address(args.metrics, "--metrics")
        from .transport.side_listener import check_side_address

        check_side_address(args.metrics_address[0], remote=args.metrics_remote == "on")
    if args.http is not None:
        args.http_address = _http_address(args.http)
    else:
        for flag in (
            "--tokens-file",
            "--public-url",
            "--jwt-issuer",
            "--jwt-audience",
            "--jwt-key",
            "--jwt-jwks",
        ):
            if getattr(args, flag.removeprefix("--").replace("-", "_")) is not None:
                raise ValueError(f"{flag} is for serving HTTP: add --http HOST:PORT")
    args.location = find_database(args.db)
    if args.node_id is not None:
        if not is_postgres_url(args.location.path) or args.durability == "memory":
            raise ValueError(
                "--node-id names a node sharing a PostgreSQL database: give --db postgresql://..."
            )
        if (
            not 0 < len(args.node_id) <= 128
            or not args.node_id.isprintable()
            or args.node_id.strip() != args.node_id
        ):
            raise ValueError(
                f"--node-id must be 1 to 128 printable characters, no surrounding spaces, not {args.node_id!r}"
            )
    if args.durability != "memory":
        path = args.location.path
        if not is_postgres_url(path):
            # The default database lives in the user's data directory, made on first run.
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as error:
                raise ValueError(
                    f"cannot create {error.filename or directory} for the database {path}: {error.strerror}"
                ) from None
        args.db = path


def _http_address(text: str, flag: str = "--http") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as a host and a port.

    Error handling:
        ValueError: saying what the flag should look like.
    """
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{flag} must be HOST:PORT (such as 127.0.0.1:8000), not {text!r}")
    return host, int(port)


def _check_serve_extras(backend: str) -> None:
    """Refuse in one line, naming the extra to install, to serve without the packages it takes.

    The library runs on asyncio alone; the MCP SDK and trio are extras
    (``actorstate[mcp]``, ``actorstate[trio]``; ``actorstate[server]`` has both).
    The SDK is looked for, not imported: serve imports it only when a message
    first needs it.
    """
    needed = [("mcp", "serve needs the MCP SDK")]
    if backend == "trio":
        needed.append(("trio", "--backend trio needs trio"))
    for module, purpose in needed:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            hint = " or serve with --backend asyncio" if module == "trio" else ""
            raise ValueError(
                f"{purpose}, which is not installed: install actorstate[{module}] "
                f"(pip install 'actorstate[{module}]'){hint}"
            )


async def _serve(args: argparse.Namespace) -> None:
    import anyio

    from . import planted
    from .config import Config
    from .state import open_state
    from .transport.signals import StopSignals

    http = _http_settings(args) if args.http is not None else None

    # Everything imported so far lives as long as the process. Frozen, the
    # cyclic collector stops walking it on every full collection (with the
    # SDK's models and schemas, about a tenth of the CPU of each call was
    # spent there; serve freezes them too once it imports them).
    gc.freeze()
    # The store's worker thread hands each commit back to the event loop's
    # thread, and waits for the GIL at every step of a commit (each round
    # trip to PostgreSQL, each SQLite call). With CPython's default 5 ms
    # switch interval a busy loop kept it waiting up to that long each time;
    # at 1 ms, one node on PostgreSQL served 4-9% more calls/s under 100
    # clients, with a lower p99 (measured side by side, three pairs). The
    # setting is the process's, so only the server takes it, not the library.
    sys.setswitchinterval(SERVE_SWITCH_INTERVAL)

    config = Config(
        max_resident=args.max_resident,
        memory_budget_mb=args.memory_budget_mb,
        idle_timeout=args.idle_timeout,
        session_ttl=args.session_ttl,
        flush_interval=args.flush_interval,
        lease_duration=args.lease_duration,
    )
    path = None if args.durability == "memory" else args.db
    planted_bugs = planted.check_names(os.environ.get(planted.ENVIRONMENT_VARIABLE, ""))
    for name in planted_bugs:
        logger.warning(
            "planted bug %s is on (%s): for the chaos runner only", name, planted.PLANTED_BUGS[name]
        )
    logger.info(
        "actorstate %s serving MCP on %s: database %s, durability %s, backend %s",
        __version__,
        "HTTP" if http else "stdio",
        shown_location(path) if path else "(none: memory only)",
        args.durability,
        args.backend,
    )
    started = time.monotonic()
    # Signals are received from before the state opens until it has closed:
    # the first stops intake, a second stops serving at once, and none can
    # interrupt the close that commits everything.
    signals = StopSignals()
    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(signals.receive)
            if http is not None and http.verifier is not None:
                from .transport.authentication import reload_on_sighup

                await task_group.start(reload_on_sighup, http.verifier)
            async with open_state(
                path, durability=args.durability, config=config, node_id=args.node_id
            ) as state:
                if http is not None:
                    from .transport.http import serve_http

                    await serve_http(state, http, signals=signals)
                else:
                    await _serve_stdio(state, args, signals)
                logger.info("serving ended: closing")
            task_group.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Only the signal task shares the group: hand back what the block raised, unwrapped.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    logger.info("closed after %.1f s; everything acknowledged is stored", time.monotonic() - started)


async def _serve_stdio(state: Any, args: argparse.Namespace, signals: Any) -> None:
    """Serve MCP on stdio, with the operations endpoints on their side listener under --metrics."""
    import anyio

    from .transport.serve import serve_stdio
    from .transport.tools import ToolContext

    context = ToolContext(state)
    serving = functools.partial(
        serve_stdio,
        state,
        max_line_bytes=args.max_line_bytes,
        max_in_flight=args.max_in_flight,
        stop_grace=args.stop_grace,
        signals=signals,
        fast_path=args.fast_path == "on",
        context=context,
    )
    if args.metrics is None:
        await serving()
        return
    from .transport.operations import Operations
    from .transport.side_listener import serve_side_listener

    operations = Operations(state, context, _operations_settings(args))
    async with anyio.create_task_group() as side:
        await side.start(serve_side_listener, operations, *args.metrics_address)
        await serving()
        side.cancel_scope.cancel()


def _operations_settings(args: argparse.Namespace) -> Any:
    from .transport.operations import OperationsSettings

    return OperationsSettings(
        drain_period=args.drain_period,
        metrics_access=args.metrics_access,
        metrics_principals=args.metrics_principals == "on",
    )


def _http_settings(args: argparse.Namespace) -> Any:
    """The HTTP server's settings from the serve flags (its verifier loaded, its address checked).

    Error handling:
        ValueError, TokensFileError: a flag or the tokens file is not usable.
    """
    from .transport.http import HttpSettings, check_listen_address

    host, port = args.http_address
    if args.max_protocol_sessions < 1:
        raise ValueError(f"--max-protocol-sessions must be at least 1, not {args.max_protocol_sessions}")
    if args.max_protocol_sessions_per_client < 1:
        raise ValueError(
            "--max-protocol-sessions-per-client must be at least 1, "
            f"not {args.max_protocol_sessions_per_client}"
        )
    verifier: Any = None
    jwt = args.jwt_issuer is not None or args.jwt_key is not None or args.jwt_jwks is not None
    if args.tokens_file is not None and jwt:
        raise ValueError("give --tokens-file or the --jwt-* flags, not both")
    if args.tokens_file is not None:
        from .transport.authentication import TokensFileVerifier
        from .transport.tokens import TokensFile

        verifier = TokensFileVerifier(TokensFile(args.tokens_file))
    elif jwt:
        from .transport.jwt_verifier import JwtVerifier

        if args.jwt_issuer is None:
            raise ValueError("--jwt-key and --jwt-jwks need --jwt-issuer: the issuer the tokens must name")
        audience = args.jwt_audience or args.public_url
        if audience is None:
            raise ValueError(
                "JWTs need an audience: give --jwt-audience (or --public-url, which it defaults to)"
            )
        verifier = JwtVerifier(args.jwt_issuer, audience, key_file=args.jwt_key, jwks_file=args.jwt_jwks)
    settings = HttpSettings(
        host=host,
        port=port,
        verifier=verifier,
        public_url=args.public_url,
        # A JWT issuer is an authorization server: the 401s point clients to it.
        authorization_servers=(args.jwt_issuer,) if args.jwt_issuer else (),
        limits=_http_limits(args),
        graceful_timeout=args.stop_grace,
        fast_path=args.fast_path == "on",
        max_protocol_sessions=args.max_protocol_sessions,
        operations=_operations_settings(args),
        max_protocol_sessions_per_client=args.max_protocol_sessions_per_client,
    )
    check_listen_address(settings)
    return settings


def _http_limits(args: argparse.Namespace) -> RegistryLimits:
    from .transport.registry import RegistryLimits

    try:
        return RegistryLimits(
            max_connections=args.max_connections,
            max_in_flight=args.max_in_flight_per_client,
            rate=args.rate_limit,
            burst=max(1, int(2 * args.rate_limit)),
        )
    except ValueError as error:
        raise ValueError(
            f"--max-connections, --max-in-flight-per-client and --rate-limit must be positive ({error})"
        ) from None


def _add_chaos(commands: Any) -> None:
    # Unset flags stay None and take RunOptions' defaults in _chaos: the
    # runner is imported only by this command, not at every start of serve.
    chaos = commands.add_parser(
        "chaos",
        help="attack a real server with seeded faults and check the history",
        description="Start `actorstate serve`, run concurrent clients against it while injecting "
        "faults drawn from the seed, then check that nothing acknowledged was lost. "
        "Exits 0 only when no invariant is violated. The seed and the command that replays "
        "the run are printed first and last.",
    )
    chaos.add_argument("--seed", type=int, help="the run's seed (default: random, printed)")
    chaos.add_argument("--duration", type=float, help="seconds of workload (default: 30)")
    chaos.add_argument("--clients", type=int, help="concurrent logical clients (default: 8)")
    chaos.add_argument("--sessions", type=int, help="sessions in play (default: 32)")
    chaos.add_argument(
        "--faults",
        help="comma-separated kinds: kill, term, stop, lock, second, full, ioerror, slow, evict, wire, flood, "
        "drop, and revoke over HTTP; with --store postgres: kill, term, stop, pgrestart, terminate, "
        "partition, drop "
        "(default: all the transport, or the store, has; or none)",
    )
    chaos.add_argument("--durability", choices=("commit", "interval"), help="the server's (default: commit)")
    chaos.add_argument("--out", help="directory for the history and the servers' logs (default: a new one)")
    chaos.add_argument(
        "--inject-bug",
        help="comma-separated planted server bugs the checkers must catch: "
        "ack-before-commit, lose-update-on-conflict, apply-retry-twice, reorder-events, "
        "leak-across-principals, claim-keeps-epoch (default: none)",
    )
    chaos.add_argument(
        "--transport",
        choices=("stdio", "http"),
        help="stdio (default), or http: serve --http with a token per principal, HTTP clients, "
        "dropped connections and cross-principal probes (every fault kind but wire, and revoke)",
    )
    chaos.add_argument("--principals", type=int, help="http: principals owning the sessions (default: 3)")
    chaos.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        help="sqlite (default): one server on a file; postgres: --nodes HTTP nodes on a throwaway "
        "PostgreSQL, clients attached to different nodes, the cluster's faults (kill, term, stop, "
        "pgrestart, terminate, partition, drop), cross-principal probes and the one-owner-per-epoch "
        "checker (implies --transport http)",
    )
    chaos.add_argument("--nodes", type=int, help="postgres: nodes sharing the database (default: 2)")


def _chaos(args: argparse.Namespace) -> int:
    import secrets
    import tempfile
    from pathlib import Path

    import anyio

    from . import planted
    from .chaos.runner import RunOptions, replay_command, run_chaos

    given: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "duration",
            "clients",
            "sessions",
            "durability",
            "transport",
            "principals",
            "store",
            "nodes",
        )
        if getattr(args, name) is not None
    }
    if args.store == "postgres":
        given.setdefault("transport", "http")
        given.setdefault("nodes", 2)
    if args.faults is not None:
        given["faults"] = tuple(kind for kind in args.faults.split(",") if kind and kind != "none")
    elif args.store == "postgres":
        from .chaos.faults import CLUSTER_FAULT_KINDS

        given["faults"] = CLUSTER_FAULT_KINDS
    elif args.transport == "http":
        from .chaos.faults import HTTP_FAULT_KINDS

        given["faults"] = HTTP_FAULT_KINDS
    if args.inject_bug is not None:
        given["planted_bugs"] = planted.check_names(args.inject_bug)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="actorstate-chaos-"))
    options = RunOptions(seed=seed, out=out, **given)
    replay = f"seed {seed}; replay: {replay_command(options)}"
    print(replay, flush=True)
    print(f"output: {out}", flush=True)
    result = anyio.run(lambda: run_chaos(options, progress=sys.stderr), backend="asyncio")
    print(result.report())
    print(replay, flush=True)
    return 0 if result.passed else 1


def _add_tokens(commands: Any) -> None:
    tokens = commands.add_parser(
        "tokens",
        help="bearer tokens for the HTTP transport (a tokens file)",
        description="Add, list and revoke the bearer tokens in a tokens file. The file keeps only each "
        "token's SHA-256; `serve --tokens-file` re-reads it on SIGHUP. --tokens-file may also be set "
        "with ACTORSTATE_TOKENS_FILE.",
    )
    actions = tokens.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="make a token for NAME and print it (once)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--operator", action="store_true", help="mark the principal an operator")
    listed = actions.add_parser("list", help="one line per token: name, created, operator")
    revoke = actions.add_parser("revoke", help="remove NAME's token")
    revoke.add_argument("name", metavar="NAME")
    for action in (add, listed, revoke):
        action.add_argument("--tokens-file", metavar="PATH", help="(env ACTORSTATE_TOKENS_FILE)")
    listed.add_argument("--json", action="store_true", help="JSON lines: name, created, operator")


def _tokens(args: argparse.Namespace) -> int:
    from .transport.tokens import add_token, list_tokens, revoke_token

    path = args.tokens_file or os.environ.get(_env_name("--tokens-file"))
    if not path:
        print(
            "actorstate: name the tokens file: --tokens-file PATH or ACTORSTATE_TOKENS_FILE", file=sys.stderr
        )
        return 2
    if args.action == "add":
        token = add_token(path, args.name, operator=args.operator)
        print(token)
        print(
            f"actorstate: token for {args.name} added to {path}; it is shown only this once, keep it now",
            file=sys.stderr,
        )
    elif args.action == "list":
        entries = list_tokens(path)
        for entry in entries:
            if args.json:
                # The same fields as the text line; never the hash.
                print(json.dumps({"name": entry.name, "created": entry.created, "operator": entry.operator}))
            else:
                print(f"{entry.name:<24} {entry.created}  {'operator' if entry.operator else '-'}")
        print(f"{len(entries)} tokens", file=sys.stderr)
    else:
        revoke_token(path, args.name)
        print(f"actorstate: revoked {args.name}'s token in {path}", file=sys.stderr)
    return 0


def _must_exist(location: DatabaseLocation) -> None:
    if not is_postgres_url(location.path) and not os.path.isfile(location.path):
        raise StoreError(location.missing())


def _describe(row: SessionRow) -> dict[str, Any]:
    from .model.codec import SnapshotDecodeError, decode_session
    from .model.session_state import iso_time

    described: dict[str, Any] = {"sessionId": row.id, "clientId": row.client_id, "version": row.version}
    described["endedAt"] = None if row.ended_at is None else iso_time(row.ended_at)
    try:
        state = decode_session(row.state)
    except SnapshotDecodeError as error:
        described["error"] = str(error)
        return described
    described.update(
        createdAt=iso_time(state.created_at),
        lastActivity=iso_time(state.last_activity),
        totalEvents=state.total_events,
        metadata=state.metadata,
        events=[
            {"type": kind, "payload": payload, "time": iso_time(at)} for kind, payload, at in state.events
        ],
    )
    return described


def _summary(described: dict[str, Any]) -> dict[str, Any]:
    """What `sessions list --json` prints for a session: the text line's fields, named."""
    summary = {
        "sessionId": described["sessionId"],
        "clientId": described["clientId"],
        "status": "ended" if described["endedAt"] else "live",
        "version": described["version"],
        "lastActivity": described.get("lastActivity"),
        "endedAt": described["endedAt"],
    }
    if "error" in described:
        summary["error"] = described["error"]
    return summary


def _sessions(args: argparse.Namespace) -> int:
    from .store.doctor import open_view

    location: DatabaseLocation = args.location
    _must_exist(location)
    path = location.path
    if args.action == "purge":
        store: Any
        if is_postgres_url(path):
            from .store.postgres import PostgresStore

            store = PostgresStore(path, node_id="actorstate-sessions-purge")
        else:
            from .store.sqlite import SQLiteStore

            store = SQLiteStore(path)
        try:
            purged = store.purge(time.time() - args.older_than_days * 86400)
        finally:
            store.close()
        print(json.dumps({"purged": purged}) if args.json else f"purged {purged} ended sessions")
        return 0
    with open_view(path) as view:
        for note in view.notes:
            print(f"actorstate: note: {note}", file=sys.stderr)
        if args.action == "show":
            row = view.session(args.session_id)
            if row is None:
                print(f"no session {args.session_id} in {shown_location(path)}", file=sys.stderr)
                return 1
            print(json.dumps(_describe(row), indent=2, ensure_ascii=False))
            return 0
        rows = view.sessions(client_id=args.client, include_ended=args.ended)
        count = 0
        for row in rows:
            count += 1
            described = _describe(row)
            if args.action == "export":
                print(json.dumps(described, ensure_ascii=False))
            elif args.json:
                print(json.dumps(_summary(described), ensure_ascii=False))
            else:
                status = "ended" if described["endedAt"] else "live"
                last = described.get("lastActivity", described.get("error"))
                print(f"{row.id}  {row.client_id:<20} {status:<5} v{row.version:<5} {last}")
    if args.action == "list":
        print(f"{count} sessions", file=sys.stderr)
    return 0


def _doctor_location(args: argparse.Namespace) -> DatabaseLocation:
    """doctor's database: ``--db``, or the positional PATH kept from before ``--db`` (not both)."""
    if (
        args.path
        and args.db
        and os.path.abspath(os.path.expanduser(args.path)) != os.path.abspath(os.path.expanduser(args.db))
    ):
        raise ValueError(f"doctor got two databases, PATH {args.path} and --db {args.db}: give one")
    if args.db:
        return find_database(args.db)
    return find_database(args.path, flag="PATH")


def _doctor(args: argparse.Namespace) -> int:
    from .store.doctor import diagnose

    location: DatabaseLocation = args.location
    _must_exist(location)
    diagnosis = diagnose(location.path)
    if args.json:
        report = {
            "database": diagnosis.path,
            "schemaVersion": diagnosis.schema_version,
            "liveSessions": diagnosis.sessions,
            "endedSessions": diagnosis.ended,
            "bytes": diagnosis.bytes,
            "problems": diagnosis.problems,
            "notes": diagnosis.notes,
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(diagnosis.report())
    return 1 if diagnosis.problems else 0


# What a refused database file should be replaced by, in each command's terms;
# DatabaseLocation.point_at names the flag or variable the user gave.
_REFUSED_ADVICE = {
    "serve": "another file",
    "sessions": "an actorstate database",
    "doctor": "an actorstate database",
}


_DATABASE_HELP = f"the SQLite database file (default: ${DATABASE_VARIABLE}, else {default_database()})"


def _add_sessions(commands: Any) -> None:
    sessions = commands.add_parser(
        "sessions",
        help="look inside a database",
        description=f"Look inside a database: --db PATH, else ${DATABASE_VARIABLE}, else the default "
        "in the data directory. Looking changes nothing; purge deletes ended sessions.",
    )
    actions = sessions.add_subparsers(dest="action", required=True)
    listed = actions.add_parser("list", help="one line per session (--json: one JSON object a line)")
    export = actions.add_parser("export", help="every session as a JSON line")
    for action in (listed, export):
        action.add_argument("--db", metavar="PATH", help=_DATABASE_HELP)
        action.add_argument("--client", help="only this client's sessions")
        action.add_argument("--ended", action="store_true", help="include ended sessions")
    listed.add_argument(
        "--json",
        action="store_true",
        help="JSON lines: sessionId, clientId, status, version, lastActivity, endedAt",
    )
    show = actions.add_parser("show", help="one session as JSON")
    show.add_argument("session_id")
    show.add_argument("--db", metavar="PATH", help=_DATABASE_HELP)
    purge = actions.add_parser("purge", help="delete ended sessions")
    purge.add_argument("--db", metavar="PATH", help=_DATABASE_HELP)
    purge.add_argument("--older-than-days", type=float, default=0.0, help="keep those ended more recently")
    purge.add_argument("--json", action="store_true", help='print {"purged": N}')


def _add_doctor(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check a database without changing it",
        description="Check a database without changing it; exit 1 if it has problems. "
        f"The database: --db PATH (or a positional PATH), else ${DATABASE_VARIABLE}, else the default.",
    )
    doctor.add_argument("--db", metavar="PATH", help=_DATABASE_HELP)
    doctor.add_argument("path", nargs="?", metavar="PATH", help="the same as --db")
    doctor.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: database, schemaVersion, liveSessions, endedSessions, bytes, problems, notes",
    )


def _stop_writing_stdout() -> None:
    """Send what is left for stdout to /dev/null, so the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actorstate", description="Concurrent, durable session state for MCP."
    )
    parser.add_argument("--version", action="version", version=f"actorstate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)

    _add_sessions(commands)
    _add_doctor(commands)
    _add_chaos(commands)
    _add_tokens(commands)
    args = parser.parse_args(argv)

    try:
        if args.command == "serve":
            _serve_settings(args)
            _check_serve_extras(args.backend)
        elif args.command == "sessions":
            args.location = find_database(args.db)
        elif args.command == "doctor":
            args.location = _doctor_location(args)
        logging.basicConfig(
            stream=sys.stderr,
            level=getattr(logging, getattr(args, "log_level", None) or "WARNING"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if args.command == "serve":
            import anyio

            anyio.run(_serve, args, backend=args.backend)
            return 0
        if args.command == "chaos":
            return _chaos(args)
        if args.command == "tokens":
            return _tokens(args)
        code = _sessions(args) if args.command == "sessions" else _doctor(args)
        # Flushed here, not at exit, so that a reader gone early is met below.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader stopped reading (`| head -1`): it has what it wanted, so
        # this is no failure. Exit 0 rather than 141 (a death by SIGPIPE), so
        # that a script with `set -o pipefail` does not fail on `| head`;
        # a reader that fails still fails the pipeline on its own.
        _stop_writing_stdout()
        return 0
    except DatabaseRefused as error:
        location: DatabaseLocation = args.location
        print(f"actorstate: {error}. {location.point_at(_REFUSED_ADVICE[args.command])}", file=sys.stderr)
        return 2
    except (ActorStateError, ValueError) as error:
        print(f"actorstate: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
