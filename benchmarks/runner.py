"""Running the cases: set-up, warm-up, repetitions in rotating order, failures kept with their case."""

from __future__ import annotations

import gc
import time
import traceback
from typing import TYPE_CHECKING, Any

from benchmarks.suite import BenchmarkFailure

if TYPE_CHECKING:
    from benchmarks.progress import Progress
    from benchmarks.suite import Case, Plan, Scenario


def runs_in(case: Case, plan: Plan) -> int:
    """How many measurements a case takes (for the progress display)."""
    warmup = plan.warmup if case.warmup else 0
    return (warmup + plan.reps) * len(case.systems)


def run_case(case: Case, plan: Plan, progress: Progress) -> dict[str, Any]:
    """Measure every system of ``case``; the case as results.json keeps it.

    A system that fails (``BenchmarkFailure``, or any exception: a system
    that crashes answered wrongly too) stops the case: its figures so far
    are kept and the failure is recorded with the case, so the report and
    the exit status show it, and the other cases still run.
    """
    names = list(case.systems)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    result: dict[str, Any] = {
        "params": case.params,
        "baseline": case.baseline,
        "comparisons": case.pairs(),
        "ours": case.our_systems(),
        "systems": {name: {"runs": runs[name]} for name in names},
    }
    for name, reason in case.skipped.items():
        result["systems"][name] = {"skipped": reason}
    started = time.perf_counter()
    warmup = plan.warmup if case.warmup else 0
    result["warmup"] = warmup
    # Runs are numbered by repetition (warm-ups first), the same number for
    # every system of a repetition: a scenario seeds its workload with it.
    try:
        for number in range(warmup):
            for name in names:
                progress.running(f"{name} (warm-up)")
                _measure(case, name, number)
                progress.advance()
        for rep in range(plan.reps):
            for name in order(names, rep):
                progress.running(name)
                runs[name].append(_measure(case, name, warmup + rep))
                progress.advance()
    except BenchmarkFailure as failure:
        result["failure"] = f"{name}: {failure}"
        progress.failed(case.key, result["failure"])
    except Exception as error:
        result["failure"] = f"{name}: {type(error).__name__}: {error}"
        progress.failed(case.key, result["failure"])
        traceback.print_exc()
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def order(names: list[str], rep: int) -> list[str]:
    """The order of repetition ``rep``: it starts with system ``rep`` (mod n); even repetitions
    run the others forward from it, odd ones backward, so no system always runs right after the
    same neighbour (with three systems or more; two can only alternate)."""
    shift = rep % len(names)
    if rep % 2 == 0:
        return names[shift:] + names[:shift]
    ahead = names[shift + 1 :] + names[: shift + 1]  # ends with system ``shift``
    return ahead[::-1]


def _measure(case: Case, name: str, number: int) -> dict[str, float]:
    # Garbage from the previous run is collected before the clock starts,
    # not in the middle of the next system's timed part.
    gc.collect()
    return case.systems[name](number)


def set_up(scenario: Scenario, plan: Plan, progress: Progress) -> list[Case] | str:
    """The scenario's cases (templates, databases, ``npm ci``: its untimed set-up), shown as
    "setting up"; a set-up that raises is the scenario's failure, returned as its text."""
    progress.case(scenario.name, "setting up")
    try:
        return scenario.cases(plan)
    except Exception as error:
        failure = f"setting up: {type(error).__name__}: {error}"
        progress.failed(scenario.name, failure)
        traceback.print_exc()
        return failure


def run_scenario(
    scenario: Scenario, cases: list[Case] | str, plan: Plan, progress: Progress
) -> dict[str, Any]:
    """Every case of one scenario, with the scenario's description for the report; ``cases``
    is what ``set_up`` returned (a text: the set-up failed, and no case runs)."""
    results = []
    for case in cases if not isinstance(cases, str) else ():
        progress.case(scenario.name, case.key)
        results.append(run_case(case, plan, progress))
    described: dict[str, Any] = {
        "title": scenario.title,
        "about": scenario.about,
        "metrics": [
            {"key": m.key, "label": m.label, "unit": m.unit, "better": m.better, "resolution": m.resolution}
            for m in scenario.metrics
        ],
        "x": scenario.x,
        "log_x": scenario.log_x,
        "plot_metrics": list(scenario.plot_metrics),
        "cases": results,
    }
    if isinstance(cases, str):
        described["failure"] = cases
    return described
