"""report.md: every scenario's table, medians with their range, ratios pair by pair.

Built from results.json alone (``python -m benchmarks --report DIR``
rebuilds it), so what the report says is what the file holds.
"""

from __future__ import annotations

from typing import Any

from benchmarks.machine import one_line
from benchmarks.stats import WIDE_SPREAD, Range, figure, pair_ratio

READING = f"""\
How to read the tables: each figure is the median of the repetitions, with the
lowest and highest in brackets. A ratio row (`A / B`) divides A's figure by
B's within each repetition, where both ran next to each other, and gives the
median of those ratios with their range; for every metric, the ratio is of the
figures as printed (for latencies, below 1 means A is faster). *not called*
marks a ratio whose repetitions disagree on which system is better; *wide*
marks a figure whose repetitions spread over more than {WIDE_SPREAD:.0%} of
the median. Neither can be read as a result on this run.
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


def shown(found: Range | None) -> str:
    if found is None:
        return "-"
    text = number(found.median)
    if found.count > 1:
        text += f" ({number(found.low)}-{number(found.high)})"
    return text + (" *wide*" if found.wide else "")


def shown_ratio(found: Range | None) -> str:
    if found is None:
        return "-"
    text = f"{found.median:.3g}x"
    if found.count > 1:
        text += f" ({found.low:.3g}-{found.high:.3g})"
    return text + (" *not called*" if found.holds_one() else "")


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
                cells = [shown(figure(system, m["key"])) for m in metrics]
            lines.append("| " + " | ".join([*values, name, *cells]) + " |")
            values = ["" for _ in params]
        for mine, against in case["comparisons"]:
            ratio_cells = [
                shown_ratio(pair_ratio(case["systems"][mine], case["systems"][against], m["key"]))
                for m in metrics
            ]
            lines.append("| " + " | ".join([*values, f"{mine} / {against}", *ratio_cells]) + " |")
        if "failure" in case:
            lines.append(
                "| " + " | ".join([*values, f"**FAILED**: {case['failure']}", *("" for _ in metrics)]) + " |"
            )
    return lines


def failures(results: dict[str, Any]) -> list[str]:
    """Every failed case as ``scenario: case: what failed``."""
    found = []
    for name, scenario in results["scenarios"].items():
        for case in scenario["cases"]:
            if "failure" in case:
                key = " · ".join(f"{k}={v}" for k, v in case["params"].items())
                found.append(f"{name}: {key}: {case['failure']}")
    return found


def render(results: dict[str, Any], plots: dict[str, list[str]] | None = None) -> str:
    options = results["options"]
    lines = [
        f"# actorstate benchmarks, {results['started']}",
        "",
        f"Machine: {one_line(results['machine'])}.",
        "",
        f"{'Quick run (`--quick`): short runs to check the suite and the systems answer right; not for reading speed. ' if options['quick'] else ''}"
        f"{options['reps']} repetitions after {options['warmup']} warm-up run(s) per system and case; "
        f"{results['seconds']:.0f} s in all.",
        "",
    ]
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
