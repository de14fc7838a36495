"""The machine a run measured: the facts results.json and the report keep with every number."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from typing import Any

PACKAGES = ("actorstate", "anyio", "trio", "mcp", "msgpack", "orjson", "pydantic")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's guess elsewhere."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The files whose changes change what a run measures: the server and the benchmarks.
MEASURED_PATHS = ("actorstate", "benchmarks")


def git_commit(directory: str) -> str | None:
    """The commit checked out in ``directory``, with ``+dirty`` when a file under
    ``MEASURED_PATHS`` differs from it or is new there (untracked, not ignored)."""
    git = shutil.which("git")
    if git is None:
        return None
    head = subprocess.run(
        [git, "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return None
    dirty = subprocess.run(
        [git, "status", "--porcelain", "--untracked-files=all", "--", *MEASURED_PATHS],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def node_version() -> str | None:
    """``node --version``, or None without node on PATH."""
    node = shutil.which("node")
    if node is None:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def filesystem_type(path: str, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem holding ``path`` (the mount point in ``mounts`` that is the
    longest prefix of its real path), or None where there is no such file."""
    target = os.path.realpath(path)
    best, found = -1, None
    try:
        with open(mounts) as file:
            for line in file:
                fields = line.split()
                if len(fields) < 3:
                    continue
                # Mount points escape spaces and the like as octal (\040).
                point = fields[1].encode().decode("unicode_escape")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) > best:
                    best, found = len(point), fields[2]
    except OSError:
        return None
    return found


def work_folder(path: str) -> dict[str, Any]:
    """The work folder the scenarios write their databases to, and its filesystem's type."""
    return {"workdir": path, "workdir_fs": filesystem_type(path)}


def describe(repository: str) -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, SQLite, node, package versions and the git commit."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "arch": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "sqlite": sqlite3.sqlite_version,
        "node": node_version(),
        "packages": versions,
        "git_commit": git_commit(repository),
    }


def one_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; {machine['system']}; "
        f"Python {machine['python']}, SQLite {machine['sqlite']}, node {machine['node'] or 'not found'}; "
        f"actorstate {machine['packages']['actorstate']} at {machine['git_commit'] or 'no git commit'}; "
        f"work folder on {machine.get('workdir_fs') or 'an unknown filesystem'}"
    )
