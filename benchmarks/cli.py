"""``python -m benchmarks`` (``make bench``): run the scenarios, write results/<timestamp>/.

    python -m benchmarks                     every scenario, 5 repetitions after a warm-up
    python -m benchmarks --quick             every scenario briefly, checking the answers (CI)
    python -m benchmarks --scenario NAME     one scenario (repeatable); --list names them
    python -m benchmarks --compare OLD_DIR   run, then compare with an older result folder
    python -m benchmarks --compare OLD NEW   compare two result folders, run nothing
    python -m benchmarks --report DIR        rebuild DIR's report.md and plots from its results.json

A run writes ``results.json`` (every repetition's figures, the machine, the
options), ``report.md`` (the tables) and a PNG plot per scenario into
``--out`` (a new or empty folder; default results/<timestamp>). The
databases the scenarios write go to a work folder, by default ``work/``
inside the results folder (removed after the run), or a fresh folder inside
``--workdir DIR``: put it on the disk you mean to measure, not on tmpfs
(the report names the work folder's filesystem and warns on tmpfs).

Exit status: 0; 1 when a system answered wrongly in any case or a
scenario's set-up failed (the report and stderr say which), or when
``--compare`` finds a problem (a regression of actorstate's beyond the
noise, a failure, a lost case or system: see ``compare.py``); 2 for a bad
command line (among them ``--out`` naming a compare folder, a file or a
non-empty folder, and a quick run compared with a full one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from benchmarks import compare, machine, plots, report
from benchmarks.progress import Progress
from benchmarks.runner import run_scenario, runs_in, set_up
from benchmarks.scenarios import SCENARIOS
from benchmarks.suite import Case, Plan

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPOSITORY, "results")
FULL_REPS, FULL_WARMUP = 5, 1
QUICK_REPS, QUICK_WARMUP = 2, 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs that check the answers (under 90 s)")
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), metavar="NAME", help="run only NAME"
    )
    parser.add_argument(
        "--backend", action="append", choices=["trio", "asyncio"], help="in-process scenarios: only this"
    )
    parser.add_argument(
        "--reps", type=int, help=f"repetitions (default {FULL_REPS}; {QUICK_REPS} with --quick)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="where to write the results (default results/<timestamp>)"
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="where the scenarios' databases go: a fresh folder inside DIR (default: work/ in the results folder)",
    )
    parser.add_argument(
        "--compare", nargs="+", metavar="DIR", help="OLD_DIR (after this run) or OLD_DIR NEW_DIR"
    )
    parser.add_argument("--report", metavar="DIR", help="rebuild DIR's report.md and plots; run nothing")
    parser.add_argument("--list", action="store_true", help="name the scenarios and exit")
    args = parser.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.compare and len(args.compare) > 2:
        parser.error("--compare takes OLD_DIR, or OLD_DIR NEW_DIR")
    for folder in [*(args.compare or ()), *([args.report] if args.report else ())]:
        if not os.path.isfile(os.path.join(folder, "results.json")):
            parser.error(f"{folder} holds no results.json: give a folder a run wrote")
    if args.out:
        if any(os.path.realpath(args.out) == os.path.realpath(folder) for folder in args.compare or ()):
            parser.error(f"--out {args.out} is a folder --compare reads: write the new run elsewhere")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            parser.error(f"--out {args.out} is a file: give a new or empty folder")
        if os.path.isdir(args.out) and os.listdir(args.out):
            parser.error(f"--out {args.out} is not empty: give a new or empty folder")
    if args.workdir and os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
        parser.error(f"--workdir {args.workdir} is a file: give a folder")
    args.old = None
    if args.compare:
        args.old = load(args.compare[0])
        new = load(args.compare[1]) if len(args.compare) == 2 else {"options": {"quick": args.quick}}
        refused = compare.refusal(args.old, new)
        if refused:
            parser.error(refused)
    return args


def load(folder: str) -> dict[str, Any]:
    with open(os.path.join(folder, "results.json")) as file:
        results: dict[str, Any] = json.load(file)
    return results


def write_report(results: dict[str, Any], folder: str) -> str:
    """Plots and report.md into ``folder``; the report's text."""
    text = report.render(results, plots.plot_all(results, folder))
    with open(os.path.join(folder, "report.md"), "w") as file:
        file.write(text)
    return text


def new_folder(started: datetime.datetime) -> str:
    """results/<timestamp with milliseconds>, with a suffix should another run have taken it."""
    base = os.path.join(
        RESULTS, started.strftime("%Y-%m-%dT%H-%M-%S.") + f"{started.microsecond // 1000:03d}Z"
    )
    folder, suffix = base, 1
    while True:
        try:
            os.makedirs(folder)
            return folder
        except FileExistsError:
            suffix += 1
            folder = f"{base}-{suffix}"


def work_folder(args: argparse.Namespace, folder: str) -> str:
    """A fresh work folder: inside ``--workdir``, or ``work/`` in the results folder."""
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        return tempfile.mkdtemp(prefix="actorstate-bench-", dir=args.workdir)
    workdir = os.path.join(folder, "work")
    os.makedirs(workdir)
    return workdir


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Run the chosen scenarios; the results and the folder they were written to."""
    started = datetime.datetime.now(datetime.UTC)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        folder = args.out
    else:
        folder = new_folder(started)
    names = args.scenario or list(SCENARIOS)
    workdir = work_folder(args, folder)
    results: dict[str, Any] = {
        "schema": 2,
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": {**machine.describe(REPOSITORY), **machine.work_folder(workdir)},
        "scenarios": {},
    }
    clock = time.perf_counter()
    try:
        plan = Plan(
            reps=args.reps or (QUICK_REPS if args.quick else FULL_REPS),
            warmup=QUICK_WARMUP if args.quick else FULL_WARMUP,
            quick=args.quick,
            workdir=workdir,
        )
        results["options"] = {
            "quick": plan.quick,
            "reps": plan.reps,
            "warmup": plan.warmup,
            "scenarios": names,
            "backends": args.backend or ["trio", "asyncio"],
        }
        scenarios = {name: SCENARIOS[name](backends=tuple(results["options"]["backends"])) for name in names}
        with Progress(0) as progress:
            # Every scenario set up first (templates, databases, npm ci), shown as it goes; a
            # set-up that fails is that scenario's failure, and the others still run.
            cases: dict[str, list[Case] | str] = {}
            for name, scenario in scenarios.items():
                found = cases[name] = set_up(scenario, plan, progress)
                if not isinstance(found, str):
                    progress.add_total(sum(runs_in(case, plan) for case in found))
            for name, scenario in scenarios.items():
                results["scenarios"][name] = run_scenario(scenario, cases[name], plan, progress)
                # Written after every scenario: a long run stopped halfway keeps what it measured.
                results["seconds"] = time.perf_counter() - clock
                with open(os.path.join(folder, "results.json"), "w") as file:
                    json.dump(results, file, indent=1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, folder


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for name, scenario in SCENARIOS.items():
            print(f"{name:12} {scenario.title}")
        return 0
    if args.report:
        write_report(load(args.report), args.report)
        print(f"rebuilt {os.path.join(args.report, 'report.md')}")
        return 0
    if args.compare and len(args.compare) == 2:
        lines, problems = compare.compare(args.old, load(args.compare[1]))
        print("\n".join(lines))
        return 1 if problems else 0

    results, folder = run(args)
    text = write_report(results, folder)
    print(text)
    print(f"\nresults: {folder}/ (results.json, report.md, plots)")
    status = 0
    failed = report.failures(results)
    for line in failed:
        print(f"FAILED: {line}", file=sys.stderr)
        status = 1
    if args.compare:
        # The old results were read before the run: with --out elsewhere (enforced), the
        # run cannot have rewritten them, and they are the old run's whatever happens on disk.
        lines, problems = compare.compare(args.old, results)
        print("\n".join(lines))
        status = status or (1 if problems else 0)
    return status
