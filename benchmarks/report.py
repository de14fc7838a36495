"""report.md: every scenario's table, medians with their range, ratios pair by pair.

Built from results.json alone (``python -m benchmarks --report DIR``
rebuilds it), so what the report says is what the file holds.
"""

from __future__ import annotations

from typing import Any

from benchmarks.machine import one_line
from benchmarks.stats import OVERLOADED, WIDE_RATIO, WIDE_SPREAD, Range, figure, overloaded, pair_ratio
from benchmarks.suite import case_key

# Fewer repetitions than this and a range (and so a verdict) rests on too few runs.
ENOUGH_REPS = 5

READING = f"""\
How to read the tables: each figure is the median of the repetitions, with the
lowest and highest in brackets. A ratio row (`A / B`) divides A's figure by
B's within each repetition, where both ran next to each other, and gives the
median of those ratios with their range; for every metric, the ratio is of the
figures as printed (for latencies, below 1 means A is faster). *not called*
marks a ratio whose repetitions disagree on which system is better (or
where one of them found no difference); *wide* marks a figure whose
repetitions spread over more than {WIDE_SPREAD:.0%} of the median, or a ratio
whose highest repetition is over {WIDE_RATIO:g} times its lowest. Neither can
be read as a result on this run. *overloaded* marks an open-loop system that
achieved less than {OVERLOADED:.0%} of the offered rate in some repetition:
its latencies grow with the run's length, so they are no result, and its
latency ratios are left out.
"""


def number(value: float) -> str:
    """Three significant digits, or all the integer digits with separators."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def shown(found: Range | None, overloaded: bool = False) -> str:
    if found is None:
        return "-"
    text = number(found.median)
    if found.count > 1:
        text += f" ({number(found.low)}-{number(found.high)})"
    return text + (" *wide*" if found.wide else "") + (" *overloaded*" if overloaded else "")


def shown_ratio(found: Range | None) -> str:
    if found is None:
        return "-"
    text = f"{found.median:.3g}x"
    if found.count > 1:
        text += f" ({found.low:.3g}-{found.high:.3g})"
    if found.holds_one():
        return text + " *not called*"
    return text + (" *wide*" if found.wide_ratio() else "")


def is_latency(metric: dict[str, Any]) -> bool:
    return bool(metric["unit"] == "ms")


def scenario_table(scenario: dict[str, Any]) -> list[str]:
    metrics = scenario["metrics"]
    params = list(scenario["cases"][0]["params"]) if scenario["cases"] else []
    header = [*params, "system", *(f"{m['label']} ({m['unit']})" for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case in scenario["cases"]:
        values = [str(case["params"][name]) for name in params]
        for name, system in case["systems"].items():
            if "skipped" in system:
                cells = [f"skipped: {system['skipped']}", *("" for _ in metrics[1:])]
            else:
                busy = overloaded(system)
                cells = [shown(figure(system, m["key"]), busy and is_latency(m)) for m in metrics]
            lines.append("| " + " | ".join([*values, name, *cells]) + " |")
            values = ["" for _ in params]
        for mine, against in case["comparisons"]:
            busy = overloaded(case["systems"][mine]) or overloaded(case["systems"][against])
            ratio_cells = [
                "- (overloaded)"
                if busy and is_latency(m)
                else shown_ratio(pair_ratio(case["systems"][mine], case["systems"][against], m["key"]))
                for m in metrics
            ]
            lines.append("| " + " | ".join([*values, f"{mine} / {against}", *ratio_cells]) + " |")
        if "failure" in case:
            lines.append(
                "| " + " | ".join([*values, f"**FAILED**: {case['failure']}", *("" for _ in metrics)]) + " |"
            )
    return lines


def failures(results: dict[str, Any]) -> list[str]:
    """Every failed set-up as ``scenario: setting up: ...`` and case as ``scenario: case: what failed``."""
    found = []
    for name, scenario in results["scenarios"].items():
        if "failure" in scenario:
            found.append(f"{name}: {scenario['failure']}")
        for case in scenario["cases"]:
            if "failure" in case:
                found.append(f"{name}: {case_key(case['params'])}: {case['failure']}")
    return found


def repetitions_line(results: dict[str, Any]) -> str:
    """How many repetitions and warm-ups the run made, and where there were none."""
    options = results["options"]
    cold = [
        name
        for name, scenario in results["scenarios"].items()
        if scenario["cases"] and all(case.get("warmup", options["warmup"]) == 0 for case in scenario["cases"])
    ]
    text = f"{options['reps']} repetitions"
    if options["warmup"]:
        text += f" after {options['warmup']} warm-up run(s) per system and case"
        if cold:
            text += f" (none in {', '.join(f'`{name}`' for name in cold)}: every run there starts cold on purpose)"
    else:
        text += ", no warm-up run"
    return text + f"; {results['seconds']:.0f} s in all."


def warnings(results: dict[str, Any]) -> list[str]:
    """What makes the whole run weaker than it looks: few repetitions, a work folder on tmpfs."""
    found = []
    reps = results["options"]["reps"]
    if reps < ENOUGH_REPS:
        found.append(
            f"**Only {reps} repetition(s)** (fewer than {ENOUGH_REPS}): each range rests on too few "
            "runs, so the *not called* and *wide* verdicts, and every ratio, are weak."
        )
    if results["machine"].get("workdir_fs") == "tmpfs":
        found.append(
            "**The work folder is on tmpfs** (memory): the durable scenarios' fsyncs cost nothing "
            "there, so their figures say nothing about a disk. Run with `--workdir` on a real disk."
        )
    return found


def render(results: dict[str, Any], plots: dict[str, list[str]] | None = None) -> str:
    options = results["options"]
    lines = [
        f"# actorstate benchmarks, {results['started']}",
        "",
        f"Machine: {one_line(results['machine'])}.",
        "",
        f"{'Quick run (`--quick`): short runs to check the suite and the systems answer right; not for reading speed. ' if options['quick'] else ''}"
        + repetitions_line(results),
        "",
    ]
    for warning in warnings(results):
        lines += [warning, ""]
    failed = failures(results)
    if failed:
        lines += ["**Failures** (a wrong answer is not a result):", ""]
        lines += [f"- {line}" for line in failed]
        lines.append("")
    lines += [READING]
    for name, scenario in results["scenarios"].items():
        lines += [f"## {scenario['title']} (`{name}`)", "", scenario["about"], ""]
        lines += scenario_table(scenario)
        lines.append("")
        for image in (plots or {}).get(name, []):
            lines += [f"![{name}]({image})", ""]
    return "\n".join(lines)
