"""The benchmark suite's frame: repetitions in rotating order, failures kept, statistics, the
report's verdicts and --compare's flags. Fed with made-up figures: nothing here times anything."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from benchmarks import compare, report
from benchmarks.runner import run_case
from benchmarks.stats import Range, figure, pair_ratio
from benchmarks.suite import BenchmarkFailure, Case, Plan


class QuietProgress:
    """Records what the runner announces instead of drawing it."""

    def __init__(self) -> None:
        self.running_order: list[str] = []
        self.failures: list[str] = []

    def case(self, scenario: str, key: str) -> None:
        pass

    def running(self, system: str) -> None:
        self.running_order.append(system)

    def advance(self) -> None:
        pass

    def failed(self, key: str, failure: str) -> None:
        self.failures.append(failure)


def counting_system(name: str, calls: list[tuple[str, int]], fail_at: int | None = None) -> Any:
    def measure(number: int) -> dict[str, float]:
        calls.append((name, number))
        if number == fail_at:
            raise BenchmarkFailure("counter 3 after 4 increments")
        return {"rate": 100.0 + number}

    return measure


def test_each_repetition_starts_with_the_next_system_and_warm_up_runs_are_not_kept(tmp_path: Any) -> None:
    """Warm-up runs every system once and keeps nothing; then repetition k starts with system k
    (mod n), every system once per repetition, and every system of a repetition gets its number
    (warm-ups counting first), so a seeded workload is the same for all of them."""
    calls: list[tuple[str, int]] = []
    case = Case(
        {"size": 1},
        {name: counting_system(name, calls) for name in ("a", "b", "c")},
        baseline="c",
    )
    result = run_case(case, Plan(reps=3, warmup=1, quick=False, workdir=str(tmp_path)), QuietProgress())  # type: ignore[arg-type]
    assert [name for name, _ in calls] == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [number for _, number in calls] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    # The warm-up's runs (number 0) are in no system's runs.
    assert result["systems"]["a"]["runs"] == [{"rate": 101.0}, {"rate": 102.0}, {"rate": 103.0}]
    assert result["comparisons"] == [("a", "c"), ("b", "c")]
    assert "failure" not in result


def test_a_wrong_answer_ends_the_case_and_is_recorded_with_it(tmp_path: Any) -> None:
    """A system raising BenchmarkFailure stops its case; the failure names the system and the
    reason, the runs so far stay, and report.failures lists it."""
    calls: list[tuple[str, int]] = []
    case = Case(
        {"size": 1},
        {"a": counting_system("a", calls, fail_at=1), "b": counting_system("b", calls)},
        baseline="b",
    )
    progress = QuietProgress()
    result = run_case(case, Plan(reps=5, warmup=0, quick=True, workdir=str(tmp_path)), progress)  # type: ignore[arg-type]
    assert result["failure"] == "a: counter 3 after 4 increments"
    assert progress.failures == [result["failure"]]
    assert len(calls) == 4  # a b, b a(fails): nothing after
    results = {"scenarios": {"demo": {"cases": [result]}}}
    assert report.failures(results) == ["demo: size=1: a: counter 3 after 4 increments"]


def test_a_crashing_system_is_a_failure_too(tmp_path: Any) -> None:
    """Any exception from a measurement is recorded as that system's failure, with its type."""

    def crash(number: int) -> dict[str, float]:
        raise KeyError("session-7")

    case = Case({"size": 1}, {"a": crash, "b": lambda number: {"rate": 1.0}}, baseline="b")
    result = run_case(case, Plan(reps=1, warmup=0, quick=True, workdir=str(tmp_path)), QuietProgress())  # type: ignore[arg-type]
    assert result["failure"] == "a: KeyError: 'session-7'"


def test_ratios_are_taken_within_each_repetition() -> None:
    """pair_ratio divides figures of the same repetition: a drift that slows both systems alike
    (here by 2x from one repetition to the next) leaves the ratio exact, where a ratio of
    medians would not be."""
    mine = {"runs": [{"rate": 200.0}, {"rate": 100.0}, {"rate": 50.0}]}
    theirs = {"runs": [{"rate": 100.0}, {"rate": 50.0}, {"rate": 25.0}]}
    ratio = pair_ratio(mine, theirs, "rate")
    assert ratio == Range(2.0, 2.0, 2.0, 3)
    spread = figure(mine, "rate")
    assert spread == Range(100.0, 50.0, 200.0, 3)
    assert spread.wide


def test_a_ratio_whose_repetitions_disagree_is_not_called() -> None:
    """When some repetitions put A ahead and others behind, the report says the result cannot be
    called; when all agree, it gives the ratio plainly."""
    mixed = report.shown_ratio(Range.of([0.9, 1.05, 1.2]))
    agreed = report.shown_ratio(Range.of([1.5, 1.6, 1.7]))
    assert mixed == "1.05x (0.9-1.2) *not called*"
    assert agreed == "1.6x (1.5-1.7)"


def _results(rate_runs: list[float], baseline_runs: list[float]) -> dict[str, Any]:
    return {
        "started": "2026-11-26 00:00:00 UTC",
        "machine": {"git_commit": "abc", "cpu": "cpu", "cores": 2},
        "scenarios": {
            "demo": {
                "metrics": [{"key": "rate", "label": "ops/s", "unit": "/s", "better": "higher"}],
                "cases": [
                    {
                        "params": {"size": 1},
                        "comparisons": [["actorstate", "baseline"]],
                        "systems": {
                            "actorstate": {"runs": [{"rate": value} for value in rate_runs]},
                            "baseline": {"runs": [{"rate": value} for value in baseline_runs]},
                        },
                    }
                ],
            }
        },
    }


def test_compare_flags_a_drop_beyond_the_noise_the_runs_measured() -> None:
    """A 40 % drop where both runs spread by under 5 % is a regression; the same figures moved by
    less than their own spread are not flagged."""
    old = _results([100.0, 101.0, 99.0], [50.0, 50.0, 50.0])
    dropped = _results([60.0, 61.0, 59.0], [50.0, 50.0, 50.0])
    lines, regressions = compare.compare(old, dropped)
    assert regressions == 2  # actorstate's figure and its ratio to the baseline
    flagged = [line.split() for line in lines if "REGRESSION" in line]
    assert [words[1:5] for words in flagged] == [
        ["size=1", "·", "actorstate", "·"],
        ["size=1", "·", "actorstate", "/"],
    ], lines
    noisy_old = _results([100.0, 150.0, 70.0], [50.0, 50.0, 50.0])
    noisy_new = _results([90.0, 130.0, 60.0], [50.0, 50.0, 50.0])
    lines, regressions = compare.compare(noisy_old, noisy_new)
    assert regressions == 0, lines


def test_compare_calls_a_faster_latency_an_improvement() -> None:
    """For a metric where lower is better, a drop is an improvement, not a regression."""
    old = _results([10.0, 10.0, 10.0], [5.0, 5.0, 5.0])
    new = copy.deepcopy(old)
    for results, value in ((old, 10.0), (new, 5.0)):
        scenario = results["scenarios"]["demo"]
        scenario["metrics"] = [{"key": "rate", "label": "p99", "unit": "ms", "better": "lower"}]
        for run in scenario["cases"][0]["systems"]["actorstate"]["runs"]:
            run["rate"] = value
    lines, regressions = compare.compare(old, new)
    assert regressions == 0
    assert any(line.strip().startswith("improvement") for line in lines), lines


@pytest.mark.parametrize(
    ("value", "text"), [(133_822.4, "133,822"), (57.31, "57.3"), (1.154, "1.15"), (0.0123, "0.0123")]
)
def test_figures_keep_three_significant_digits(value: float, text: str) -> None:
    """Tables print three significant digits, or every integer digit with separators."""
    assert report.number(value) == text
