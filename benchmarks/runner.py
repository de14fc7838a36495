"""Running the cases: warm-up, repetitions in rotating order, failures kept with their case."""

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
        "systems": {name: {"runs": runs[name]} for name in names},
    }
    for name, reason in case.skipped.items():
        result["systems"][name] = {"skipped": reason}
    started = time.perf_counter()
    warmup = plan.warmup if case.warmup else 0
    # Runs are numbered by repetition (warm-ups first), the same number for
    # every system of a repetition: a scenario seeds its workload with it.
    try:
        for number in range(warmup):
            for name in names:
                progress.running(f"{name} (warm-up)")
                _measure(case, name, number)
                progress.advance()
        for rep in range(plan.reps):
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
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


def _measure(case: Case, name: str, number: int) -> dict[str, float]:
    # Garbage from the previous run is collected before the clock starts,
    # not in the middle of the next system's timed part.
    gc.collect()
    return case.systems[name](number)


def run_scenario(scenario: Scenario, cases: list[Case], plan: Plan, progress: Progress) -> dict[str, Any]:
    """Every case of one scenario, with the scenario's description for the report."""
    results = []
    for case in cases:
        progress.case(scenario.name, case.key)
        results.append(run_case(case, plan, progress))
    return {
        "title": scenario.title,
        "about": scenario.about,
        "metrics": [
            {"key": m.key, "label": m.label, "unit": m.unit, "better": m.better} for m in scenario.metrics
        ],
        "x": scenario.x,
        "log_x": scenario.log_x,
        "plot_metrics": list(scenario.plot_metrics),
        "cases": results,
    }
