"""``python -m benchmarks`` (``make bench``): run the scenarios, write results/<timestamp>/.

    python -m benchmarks                     every scenario, 5 repetitions after a warm-up
    python -m benchmarks --quick             every scenario briefly, checking the answers (CI)
    python -m benchmarks --scenario NAME     one scenario (repeatable); --list names them
    python -m benchmarks --compare OLD_DIR   run, then compare with an older result folder
    python -m benchmarks --compare OLD NEW   compare two result folders, run nothing
    python -m benchmarks --report DIR        rebuild DIR's report.md and plots from its results.json

A run writes ``results.json`` (every repetition's figures, the machine, the
options), ``report.md`` (the tables) and a PNG plot per scenario. Exit
status: 0; 1 when a system answered wrongly in any case (the report and
stderr say which), or when ``--compare`` flags a regression beyond the
noise; 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from typing import Any

from benchmarks import compare, machine, plots, report
from benchmarks.progress import Progress
from benchmarks.runner import run_scenario, runs_in
from benchmarks.scenarios import SCENARIOS
from benchmarks.suite import Plan

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


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Run the chosen scenarios; the results and the folder they were written to."""
    started = datetime.datetime.now(datetime.UTC)
    folder = args.out or os.path.join(RESULTS, started.strftime("%Y-%m-%dT%H-%M-%SZ"))
    os.makedirs(folder, exist_ok=True)
    names = args.scenario or list(SCENARIOS)
    results: dict[str, Any] = {
        "schema": 1,
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine.describe(REPOSITORY),
        "scenarios": {},
    }
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="actorstate-bench-") as workdir:
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
        cases = {name: scenario.cases(plan) for name, scenario in scenarios.items()}
        total = sum(runs_in(case, plan) for found in cases.values() for case in found)
        with Progress(total) as progress:
            for name, scenario in scenarios.items():
                results["scenarios"][name] = run_scenario(scenario, cases[name], plan, progress)
                # Written after every scenario: a long run stopped halfway keeps what it measured.
                results["seconds"] = time.perf_counter() - clock
                with open(os.path.join(folder, "results.json"), "w") as file:
                    json.dump(results, file, indent=1)
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
        lines, regressions = compare.compare(load(args.compare[0]), load(args.compare[1]))
        print("\n".join(lines))
        return 1 if regressions else 0

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
        lines, regressions = compare.compare(load(args.compare[0]), results)
        print("\n".join(lines))
        status = status or (1 if regressions else 0)
    return status
