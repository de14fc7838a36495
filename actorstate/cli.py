"""The ``actorstate`` command.

``actorstate serve`` will start the stdio MCP server; until that lands it
runs a short embedded demonstration of the actor core and prints what it did.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import anyio

from . import __version__
from .config import Config
from .errors import StoreError
from .persistence.doctor import diagnose
from .state import open_state


async def _demo(sessions: int, callers: int, calls: int) -> dict[str, object]:
    async with open_state(config=Config()) as state:
        handles = [await state.create_session(client_id="demo") for _ in range(sessions)]

        async def caller(index: int) -> None:
            for call in range(calls):
                await handles[(index + call) % sessions].increment()

        async with anyio.create_task_group() as tg:
            for index in range(callers):
                tg.start_soon(caller, index)
        counters = [(await handle.context())["metadata"]["counter"] for handle in handles]
        return {
            "sessions": sessions,
            "concurrent_callers": callers,
            "increments": callers * calls,
            "sum_of_counters": sum(counters),
            "exact": sum(counters) == callers * calls,
            "stats": state.stats(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actorstate", description="Concurrent session state built on actors."
    )
    parser.add_argument("--version", action="version", version=f"actorstate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (for now: an embedded demonstration)")
    serve.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    doctor = commands.add_parser("doctor", help="check a database without changing it")
    doctor.add_argument("path", help="the SQLite database file")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        print(
            "actorstate serve: the stdio MCP server is not part of this build yet; "
            "running the embedded demonstration instead",
            file=sys.stderr,
        )
        report = anyio.run(_demo, 10, 100, 100, backend=args.backend)
        print(json.dumps(report, indent=2))
        return 0 if report["exact"] else 1
    if args.command == "doctor":
        try:
            diagnosis = diagnose(args.path)
        except StoreError as error:
            print(f"actorstate doctor: {error}", file=sys.stderr)
            return 2
        print(diagnosis.report())
        return 1 if diagnosis.problems else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
