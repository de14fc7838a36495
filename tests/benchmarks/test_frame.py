"""The benchmark suite's frame: repetitions in rotating order, failures kept, statistics, the
report's verdicts and --compare's flags. Fed with made-up figures: nothing here times anything."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from benchmarks import compare, report
from benchmarks.runner import order, run_case
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
    (mod n), odd repetitions running the others backward, every system once per repetition, and
    every system of a repetition gets its number (warm-ups counting first), so a seeded workload
    is the same for all of them."""
    calls: list[tuple[str, int]] = []
    case = Case(
        {"size": 1},
        {name: counting_system(name, calls) for name in ("a", "b", "c")},
        baseline="c",
    )
    result = run_case(case, Plan(reps=3, warmup=1, quick=False, workdir=str(tmp_path)), QuietProgress())  # type: ignore[arg-type]
    assert [name for name, _ in calls] == ["a", "b", "c", "a", "b", "c", "b", "a", "c", "c", "a", "b"]
    assert [number for _, number in calls] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    # The warm-up's runs (number 0) are in no system's runs.
    assert result["systems"]["a"]["runs"] == [{"rate": 101.0}, {"rate": 102.0}, {"rate": 103.0}]
    assert result["comparisons"] == [("a", "c"), ("b", "c")]
    assert "failure" not in result


def test_no_system_always_runs_right_after_the_same_neighbour() -> None:
    """Over 2n repetitions of n >= 3 systems, each starts two of them (each n in a row once), and each
    one follows at least two different systems (a cyclic rotation would give it one)."""
    for count in (3, 4, 5):
        names = [f"s{index}" for index in range(count)]
        orders = [order(names, rep) for rep in range(2 * count)]
        assert all(sorted(found) == names for found in orders)
        assert [found[0] for found in orders] == names + names
        for name in names:
            before = {found[found.index(name) - 1] for found in orders if found.index(name) > 0}
            assert len(before) >= 2, (count, name, orders)


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


def _results(rate_runs: list[float], baseline_runs: list[float], cpu: str = "cpu") -> dict[str, Any]:
    return {
        "started": "2026-11-26 00:00:00 UTC",
        "machine": {"git_commit": "abc", "cpu": cpu, "cores": 2},
        "options": {"quick": False, "reps": len(rate_runs), "warmup": 1, "scenarios": ["demo"]},
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
    """A 40 % drop where both runs spread by under 5 % is a regression, flagged on actorstate's
    figure and on its ratio to the baseline but counted once; the same figures moved by less
    than their own spread are not flagged."""
    old = _results([100.0, 101.0, 99.0], [50.0, 50.0, 50.0])
    dropped = _results([60.0, 61.0, 59.0], [50.0, 50.0, 50.0])
    lines, regressions = compare.compare(old, dropped)
    assert regressions == 1  # one system, one metric: its raw figure and its ratio both moved
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


def _with_ours(results: dict[str, Any], ours: list[str]) -> dict[str, Any]:
    results["scenarios"]["demo"]["cases"][0]["ours"] = ours
    return results


def test_compare_shows_a_slower_baseline_without_failing() -> None:
    """A baseline that got slower moves the actorstate / baseline ratio up (better) and its own
    raw figure down: shown as information, not a regression, exit-status count 0."""
    old = _results([100.0, 100.0, 100.0], [50.0, 50.0, 50.0])
    new = _results([100.0, 100.0, 100.0], [25.0, 25.0, 25.0])
    lines, problems = compare.compare(old, new)
    assert problems == 0, lines
    baseline_lines = [line for line in lines if "· baseline · rate" in line]
    assert baseline_lines, lines
    assert "worse" in baseline_lines[0]
    assert "a baseline" in baseline_lines[0]
    assert not any("REGRESSION" in line for line in lines), lines


def test_compare_counts_only_ratios_across_machines() -> None:
    """On another machine a raw drop of actorstate's figure, with the ratio unchanged (the
    baseline dropped alike), is information; the same drop on the same machine is a regression."""
    old = _results([100.0, 100.0, 100.0], [50.0, 50.0, 50.0])
    elsewhere = _results([50.0, 50.0, 50.0], [25.0, 25.0, 25.0], cpu="other cpu")
    lines, problems = compare.compare(old, elsewhere)
    assert problems == 0, lines
    assert any("another machine" in line for line in lines), lines
    here = _results([50.0, 50.0, 50.0], [25.0, 25.0, 25.0])
    assert compare.compare(old, here)[1] == 1


def test_compare_takes_ours_from_the_case() -> None:
    """A case naming its own systems (``ours``) decides whose drop counts: with the baseline named
    as ours, its drop is a regression too."""
    old = _with_ours(_results([100.0] * 3, [50.0] * 3), ["actorstate", "baseline"])
    new = _with_ours(_results([100.0] * 3, [25.0] * 3), ["actorstate", "baseline"])
    assert compare.compare(old, new)[1] == 1


@pytest.mark.parametrize(
    ("was", "now", "problems", "word"),
    [
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0, None),
        ([0.0, 0.0, 0.0], [40.0, 40.0, 40.0], 0, "improvement"),  # rate: higher is better
        ([40.0, 40.0, 40.0], [0.0, 0.0, 0.0], 1, "REGRESSION"),
        ([-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0], 0, None),
    ],
)
def test_compare_handles_zero_and_negative_medians(
    was: list[float], now: list[float], problems: int, word: str | None
) -> None:
    """A zero or negative median has no ratio: no crash (log of zero, a mean of no changes),
    0 -> 0 is no change, and 0 -> N or N -> 0 is judged by its direction, not hidden."""
    old = _results(was, [50.0, 50.0, 50.0])
    new = _results(now, [50.0, 50.0, 50.0])
    lines, found = compare.compare(old, new)
    assert found == problems, lines
    raw = [line for line in lines if "· actorstate · rate" in line]
    if word is None:
        assert not raw, lines
    else:
        assert raw, lines
        assert raw[0].split()[0] == word, lines


def test_compare_counts_failures_and_lost_rows() -> None:
    """A failed case in the new run, and a system or a case the old run measured that the new one
    did not, are listed and each counted as a problem (a system a failure kept from running
    counts with the failure, once); a scenario or backend the new run was not asked for is no problem."""
    old = _results([100.0] * 3, [50.0] * 3)
    failed = _results([100.0] * 3, [50.0] * 3)
    failed["scenarios"]["demo"]["cases"][0]["failure"] = "actorstate: counter 3 after 4 increments"
    lines, problems = compare.compare(old, failed)
    assert problems == 1
    assert any("FAILED demo: size=1: actorstate: counter 3" in line for line in lines), lines
    # A failure that stopped the case before the baseline ran is one problem, not two.
    failed["scenarios"]["demo"]["cases"][0]["systems"]["baseline"]["runs"] = []
    assert compare.compare(old, failed)[1] == 1
    lost_system = _results([100.0] * 3, [50.0] * 3)
    lost_system["scenarios"]["demo"]["cases"][0]["systems"]["baseline"] = {"skipped": "node not found"}
    lines, problems = compare.compare(old, lost_system)
    assert problems == 1
    assert any("LOST size=1 · baseline: skipped in the new run (node not found)" in line for line in lines)
    lost_case = _results([100.0] * 3, [50.0] * 3)
    lost_case["scenarios"]["demo"]["cases"][0]["params"] = {"size": 2}
    lines, problems = compare.compare(old, lost_case)
    assert problems == 1
    assert any("LOST size=1: not measured" in line for line in lines), lines
    on_trio = _results([100.0] * 3, [50.0] * 3)
    for results in (old, on_trio):
        results["scenarios"]["demo"]["cases"][0]["params"] = {"backend": "asyncio"}
    on_trio["scenarios"]["demo"]["cases"][0]["params"] = {"backend": "trio"}
    on_trio["options"]["backends"] = ["trio"]  # asyncio not asked for: information
    assert compare.compare(old, on_trio)[1] == 0
    on_trio["options"]["backends"] = ["trio", "asyncio"]  # asked for and not measured: lost
    assert compare.compare(old, on_trio)[1] == 1
    old = _results([100.0] * 3, [50.0] * 3)
    unfinished = _results([100.0] * 3, [50.0] * 3)
    del unfinished["scenarios"]["demo"]
    assert compare.compare(old, unfinished)[1] == 1
    unfinished["options"]["scenarios"] = []  # not asked for: information
    assert compare.compare(old, unfinished)[1] == 0


def test_compare_with_one_repetition_uses_the_floor() -> None:
    """With one repetition a run has no spread: the noise is the 5 % floor, so a 3 % move is
    noise and a 10 % drop a regression."""
    old = _results([100.0], [50.0])
    assert compare.compare(old, _results([97.0], [50.0]))[1] == 0
    assert compare.compare(old, _results([90.0], [50.0]))[1] == 1


def test_compare_refuses_a_quick_run_against_a_full_one() -> None:
    """A quick run measures other sizes than a full one: compare refuses instead of flagging."""
    old = _results([100.0] * 3, [50.0] * 3)
    quick = _results([100.0] * 3, [50.0] * 3)
    quick["options"]["quick"] = True
    assert compare.refusal(old, quick)
    with pytest.raises(ValueError, match="quick run"):
        compare.compare(old, quick)


def test_compare_allows_a_change_within_the_metric_resolution() -> None:
    """A metric measured in coarse ticks (``resolution``) is not a regression when it moved by
    less than one tick, however narrow the runs' own spread."""
    old = _results([100.0] * 3, [50.0] * 3)
    new = _results([140.0] * 3, [50.0] * 3)
    for results in (old, new):
        scenario = results["scenarios"]["demo"]
        scenario["metrics"] = [
            {"key": "rate", "label": "cpu", "unit": "µs", "better": "lower", "resolution": "tick"}
        ]
        for system in scenario["cases"][0]["systems"].values():
            for run in system["runs"]:
                run["tick"] = 50.0
    assert compare.compare(old, new)[1] == 0
    for system in new["scenarios"]["demo"]["cases"][0]["systems"].values():
        for run in system["runs"]:
            run["tick"] = 1.0
    for system in old["scenarios"]["demo"]["cases"][0]["systems"].values():
        for run in system["runs"]:
            run["tick"] = 1.0
    assert compare.compare(old, new)[1] == 1


def test_a_ratio_at_one_or_spread_wide_is_marked() -> None:
    """A repetition exactly at 1 leaves the ratio not called; all repetitions at exactly the same
    ratio are a plain result; a ratio whose highest repetition is over twice its lowest is *wide*
    even when it does not cross 1."""
    assert report.shown_ratio(Range.of([1.0, 1.2, 1.4])) == "1.2x (1-1.4) *not called*"
    assert report.shown_ratio(Range.of([1.0, 1.0, 1.0])) == "1x (1-1)"
    assert report.shown_ratio(Range.of([1.5, 2.0, 3.5])) == "2x (1.5-3.5) *wide*"


def _report_results(**options: Any) -> dict[str, Any]:
    results = _results([100.0] * 3, [50.0] * 3)
    results["started"] = "2026-11-26 00:00:00 UTC"
    results["seconds"] = 12.0
    results["machine"].update(
        memory_gib=4,
        system="Linux",
        python="3.11.9",
        sqlite="3.45",
        node=None,
        packages={"actorstate": "0.1"},
        workdir_fs="ext4",
    )
    results["options"].update(options)
    scenario = results["scenarios"]["demo"]
    scenario.update(title="Demo", about="A demo.", x=None, log_x=True, plot_metrics=[])
    return results


def test_the_report_warns_of_few_repetitions_and_tmpfs() -> None:
    """Below 5 repetitions the report says its verdicts are weak; on tmpfs it says the durable
    figures mean nothing; with 5 on ext4 it says neither, and the machine line names the filesystem."""
    weak = report.render(_report_results(reps=2))
    assert "Only 2 repetition(s)" in weak
    sound = _report_results(reps=5)
    assert "repetition(s)** (fewer" not in report.render(sound)
    assert "work folder on ext4" in report.render(sound)
    sound["machine"]["workdir_fs"] = "tmpfs"
    assert "The work folder is on tmpfs" in report.render(sound)


def test_the_report_names_scenarios_without_warm_up() -> None:
    """The header says which scenarios ran no warm-up (their cases start cold on purpose)."""
    results = _report_results(reps=5)
    results["scenarios"]["demo"]["cases"][0]["warmup"] = 0
    assert "(none in `demo`" in report.render(results)
    results["scenarios"]["demo"]["cases"][0]["warmup"] = 1
    assert "none in" not in report.render(results)


def test_an_overloaded_system_has_its_latencies_marked_and_its_latency_ratios_left_out() -> None:
    """A system that achieved under 98 % of the offered rate has its latency figures marked
    *overloaded* and the latency ratios involving it shown as "- (overloaded)"; its rate ratio stays."""
    results = _report_results(reps=5)
    scenario = results["scenarios"]["demo"]
    scenario["metrics"] = [
        {"key": "rate", "label": "ops/s", "unit": "/s", "better": "higher"},
        {"key": "p99_ms", "label": "p99", "unit": "ms", "better": "lower"},
    ]
    systems = scenario["cases"][0]["systems"]
    for name, rate in (("actorstate", 1000.0), ("baseline", 700.0)):
        systems[name]["runs"] = [{"rate": rate, "offered_rate": 1000.0, "p99_ms": 5.0} for _ in range(3)]
    table = "\n".join(report.scenario_table(scenario))
    baseline_row = next(line for line in table.splitlines() if "| baseline |" in line)
    assert "*overloaded*" in baseline_row.split("|")[-2]
    assert "*overloaded*" not in baseline_row.split("|")[-3]
    ratio_row = next(line for line in table.splitlines() if "actorstate / baseline" in line)
    assert "- (overloaded)" in ratio_row
    assert "1.43x" in ratio_row
    actorstate_row = next(line for line in table.splitlines() if "| actorstate |" in line)
    assert "overloaded" not in actorstate_row
