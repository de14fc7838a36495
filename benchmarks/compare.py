"""``--compare OLD_DIR``: how a run moved against an older one, flagging what moved beyond the noise.

For every scenario, case, system and metric both runs measured, the change
is new median / old median, turned so that above 1 is better. The noise is
what the runs themselves measured: the wider of the two runs' spreads
(highest minus lowest repetition, relative to the median), and never less
than ``FLOOR``. A change worse than the noise is flagged a regression; a
change better than it, an improvement; anything inside it is noise. The
pair-by-pair ratios (``A / B``) are compared the same way: on a different
or busier machine they move less than the raw figures.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks.stats import Range, better_ratio, figure, pair_ratio

FLOOR = 0.05


def _key(case: dict[str, Any]) -> str:
    return " · ".join(f"{k}={v}" for k, v in case["params"].items())


def _rows(scenario: dict[str, Any]) -> dict[tuple[str, str, str], Range]:
    """(case, system or ratio, metric) -> its range, for every figure the scenario holds."""
    rows: dict[tuple[str, str, str], Range] = {}
    for case in scenario["cases"]:
        key = _key(case)
        for metric in scenario["metrics"]:
            for name, system in case["systems"].items():
                found = figure(system, metric["key"])
                if found is not None:
                    rows[key, name, metric["key"]] = found
            for mine, against in case["comparisons"]:
                ratio = pair_ratio(case["systems"][mine], case["systems"][against], metric["key"])
                if ratio is not None:
                    rows[key, f"{mine} / {against}", metric["key"]] = ratio
    return rows


def compare(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], int]:
    """The lines to print, and how many regressions beyond the noise they flag."""
    lines = [
        f"old: {old['started']} at {old['machine']['git_commit']} ({old['machine']['cpu']}, {old['machine']['cores']} cores)",
        f"new: {new['started']} at {new['machine']['git_commit']} ({new['machine']['cpu']}, {new['machine']['cores']} cores)",
    ]
    if (old["machine"]["cpu"], old["machine"]["cores"]) != (new["machine"]["cpu"], new["machine"]["cores"]):
        lines.append("the runs are from different machines: read the A / B ratios, not the raw figures")
    regressions = 0
    for name, scenario in new["scenarios"].items():
        if name not in old["scenarios"]:
            lines.append(f"\n{name}: not in the old run")
            continue
        better = {m["key"]: m["better"] for m in scenario["metrics"]}
        old_rows, new_rows = _rows(old["scenarios"][name]), _rows(scenario)
        shared = [row for row in new_rows if row in old_rows]
        if not shared:
            lines.append(f"\n{name}: no case in common with the old run")
            continue
        changes = []
        flagged = []
        for row in shared:
            was, now = old_rows[row], new_rows[row]
            if not was.median:
                continue
            change = better_ratio(now.median / was.median, better[row[2]])
            noise = max(was.width, now.width, FLOOR)
            changes.append(change)
            if change < 1 / (1 + noise) or change > 1 + noise:
                verdict = "REGRESSION" if change < 1 else "improvement"
                regressions += change < 1
                flagged.append(
                    f"  {verdict:11} {row[0]} · {row[1]} · {row[2]}: {was.median:,.4g} -> {now.median:,.4g} "
                    f"({change:.2f}x better-is-up; noise ±{noise:.0%})"
                )
        middle = math.exp(sum(math.log(c) for c in changes) / len(changes))
        lines.append(
            f"\n{name}: {len(changes)} figures in common, geometric mean {middle:.2f}x (above 1: better); "
            f"{len(flagged)} beyond the noise"
        )
        lines += flagged
    return lines, regressions
