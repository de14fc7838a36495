"""A throwaway PostgreSQL cluster from the machine's own binaries, for trying actorstate and for tests.

:func:`start_cluster` runs ``initdb`` into a new temporary folder and starts
``postgres`` on it, listening on a unix socket in that folder and on a free
loopback port, with trust authentication for the local user ``actorstate``
and a database of the same name. :meth:`PostgresCluster.stop` ends the
server and deletes the folder. Nothing of the machine's own PostgreSQL
service is touched.

PostgreSQL refuses to run as root. Run as root (a container, CI), the
cluster belongs to an unprivileged system user, ``actorstate-pg``, created
on first use: the folder is handed to it and ``initdb`` and ``postgres``
run under its uid (``subprocess``'s ``user=``/``group=``, no ``su``).

The binaries are found on ``PATH``, then in ``pg_config --bindir``, then in
the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout, which keeps them
off ``PATH``). Durability settings are relaxed (``fsync=off``) unless
``durable=True``: the cluster is thrown away, and a crash of the server
process alone loses nothing that reached the operating system.

Run as a program (``make postgres``) it starts a cluster, prints its URL and
serves until interrupted::

    python -m actorstate.store.postgres_cluster

This module uses the standard library only; it is a tool around the store,
not part of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ClusterError", "PostgresCluster", "find_binaries", "start_cluster"]

DATABASE = "actorstate"
DATABASE_USER = "actorstate"
SYSTEM_USER = "actorstate-pg"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0
_LOG_TAIL_LINES = 20
_INSTALL_HINT = (
    "install PostgreSQL's server binaries (Debian/Ubuntu: apt-get install postgresql; "
    "macOS: brew install postgresql) or put the folder holding initdb on PATH"
)


class ClusterError(RuntimeError):
    """The throwaway cluster could not be made, started or stopped; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Runner:
    """Who runs the server: the current user, or (as root) the unprivileged system user."""

    user: str | None
    uid: int
    gid: int

    def run(self, command: list[str], *, what: str) -> None:
        done = subprocess.run(
            command,
            user=self.user,
            group=self.gid if self.user else None,
            extra_groups=[] if self.user else None,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            raise ClusterError(f"{what} failed (exit {done.returncode}): {output}")


def find_binaries() -> str:
    """The folder holding ``initdb`` and ``postgres``.

    Error handling:
        ClusterError: none found, saying how to install them.
    """
    candidates: list[str] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            candidates.append(bindir)

    def major(folder: str) -> float:
        name = os.path.basename(os.path.dirname(folder))
        try:
            return float(name)
        except ValueError:
            return 0.0

    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True))
    for folder in candidates:
        if all(os.access(os.path.join(folder, name), os.X_OK) for name in ("initdb", "postgres")):
            return folder
    raise ClusterError(f"no PostgreSQL server binaries (initdb, postgres) found: {_INSTALL_HINT}")


def _runner() -> _Runner:
    """The current user, or as root the system user :data:`SYSTEM_USER` (created if missing)."""
    if os.geteuid() != 0:
        return _Runner(None, os.getuid(), os.getgid())
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise ClusterError(
                f"PostgreSQL refuses to run as root, and creating the user {SYSTEM_USER} to run it "
                f"failed: {done.stderr.strip()}; run as an unprivileged user instead"
            ) from None
        entry = pwd.getpwnam(SYSTEM_USER)
    return _Runner(SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclasses.dataclass(slots=True)
class PostgresCluster:
    """One running throwaway cluster; :func:`start_cluster` makes it."""

    folder: str
    bindir: str
    port: int
    _runner: _Runner
    durable: bool = False
    _process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> str:
        return os.path.join(self.folder, "data")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.folder, "socket")

    @property
    def log_path(self) -> str:
        return os.path.join(self.folder, "postgres.log")

    def url(self, database: str = DATABASE) -> str:
        """The URL of ``database`` over the loopback port."""
        return f"postgresql://{DATABASE_USER}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = DATABASE) -> str:
        """The URL of ``database`` over the unix socket."""
        return f"postgresql://{DATABASE_USER}@/{database}?host={self.socket_dir}&port={self.port}"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        process = self._process
        return None if process is None or process.poll() is not None else process.pid

    def start(self) -> None:
        """Start the server on the existing data folder and wait until it accepts connections.

        Error handling:
            ClusterError: it exited or did not get ready in time; the message
                holds the end of its log.
        """
        if self.pid is not None:
            return
        # Thrown away afterwards, so by default nothing waits for the disk;
        # a durable cluster (for measurements) keeps PostgreSQL's defaults.
        relaxed = [] if self.durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]
        log = open(self.log_path, "ab")  # the server writes it until it stops
        try:
            self._process = subprocess.Popen(
                [
                    os.path.join(self.bindir, "postgres"),
                    "-D",
                    self.data,
                    "-k",
                    self.socket_dir,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    *relaxed,
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=32MB",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._runner.user,
                group=self._runner.gid if self._runner.user else None,
                extra_groups=[] if self._runner.user else None,
                cwd="/",
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it in order
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        pid_file = os.path.join(self.data, "postmaster.pid")
        pause = 0.01
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise ClusterError(
                    f"postgres exited with status {process.returncode} while starting:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                with open(pid_file) as file:
                    lines = file.read().splitlines()
                # The eighth line of postmaster.pid is the server's status.
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            if time.monotonic() > deadline:
                self.stop("immediate")
                raise ClusterError(
                    f"postgres did not get ready within {_START_TIMEOUT:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``"fast"`` (SIGINT: roll back sessions, checkpoint) or ``"immediate"``
        (SIGQUIT: no checkpoint; the next start recovers from the WAL, as after a crash)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        how = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "smart": signal.SIGTERM}[mode]
        process.send_signal(how)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, mode: str = "immediate") -> None:
        """Stop (by default as a crash would) and start again on the same port and data."""
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> None:
        """Create an empty database owned by the cluster's user (``createdb``)."""
        self._runner.run(
            [
                os.path.join(self.bindir, "createdb"),
                "-h",
                self.socket_dir,
                "-p",
                str(self.port),
                "-U",
                DATABASE_USER,
                name,
            ],
            what=f"creating the database {name}",
        )

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as file:
                return "".join(file.readlines()[-_LOG_TAIL_LINES:])
        except OSError as error:
            return f"(no log: {error.strerror})"

    def destroy(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop("fast")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _reachable_by_others(folder: str) -> bool:
    """Whether every folder from the root down to ``folder`` may be searched by any user."""
    path = os.path.realpath(folder)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def start_cluster(
    parent: str | None = None, *, durable: bool = False, port: int | None = None
) -> PostgresCluster:
    """Make and start a throwaway cluster in a new folder under ``parent`` (the system's temp folder).

    ``durable`` keeps PostgreSQL's own fsync settings (for measurements);
    by default the cluster does not wait for the disk. ``port``: the
    loopback port to listen on (a free one by default).

    Error handling:
        ClusterError: no binaries, no user to run them as, or the server
            would not start; the message says which and why.
    """
    bindir = find_binaries()
    runner = _runner()
    parent = parent or tempfile.gettempdir()
    if runner.user is not None and not _reachable_by_others(parent):
        raise ClusterError(
            f"the server runs as {runner.user}, which cannot reach {parent} (a folder on the way is "
            "not searchable by others); name another parent folder, such as /tmp"
        )
    folder = tempfile.mkdtemp(prefix="actorstate-pg-", dir=parent)
    cluster: PostgresCluster | None = None
    try:
        # The server's user must reach its folder (its parents were checked).
        os.chmod(folder, 0o700)
        os.mkdir(os.path.join(folder, "socket"), 0o700)
        if runner.user is not None:
            for path in (folder, os.path.join(folder, "socket")):
                os.chown(path, runner.uid, runner.gid)
        cluster = PostgresCluster(folder, bindir, port or _free_port(), runner, durable)
        runner.run(
            [
                os.path.join(bindir, "initdb"),
                "-D",
                cluster.data,
                "--username",
                DATABASE_USER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            what="initdb",
        )
        cluster.start()
        cluster.create_database(DATABASE)
    except BaseException:
        if cluster is not None:
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(
    parent: str | None = None, *, durable: bool = False, port: int | None = None
) -> Iterator[PostgresCluster]:
    """:func:`start_cluster` for the length of a ``with`` block; destroyed after it."""
    cluster = start_cluster(parent, durable=durable, port=port)
    try:
        yield cluster
    finally:
        cluster.destroy()


def main(argv: list[str] | None = None) -> int:
    """Start a cluster, print its URL, serve until interrupted, then delete it."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m actorstate.store.postgres_cluster",
        description="Start a throwaway PostgreSQL cluster, print its URL, and serve until "
        "interrupted (Ctrl-C), then delete it.",
    )
    parser.add_argument("--port", type=int, help="loopback port to listen on (default: a free one)")
    parser.add_argument("--parent", help="folder to make the cluster's folder in (default: the temp folder)")
    parser.add_argument(
        "--durable", action="store_true", help="keep PostgreSQL's fsync settings (default: off)"
    )
    args = parser.parse_args(argv)
    try:
        cluster = start_cluster(args.parent, durable=args.durable, port=args.port)
    except ClusterError as error:
        print(f"cannot start PostgreSQL: {error}", file=sys.stderr)
        return 1
    stop = False

    def interrupted(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        print(cluster.url(), flush=True)
        print(
            f"PostgreSQL is running in {cluster.folder} (log: {cluster.log_path}).\n"
            f"Try: actorstate serve --db '{cluster.url()}'\n"
            "Ctrl-C stops it and deletes the folder.",
            file=sys.stderr,
            flush=True,
        )
        while not stop and cluster.pid is not None:
            time.sleep(0.2)
        if not stop:
            print(f"postgres exited on its own:\n{cluster.log_tail()}", file=sys.stderr)
            return 1
        return 0
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
