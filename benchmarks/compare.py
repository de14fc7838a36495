"""``--compare OLD_DIR``: how a run moved against an older one, flagging what moved beyond the noise.

For every scenario, case, system and metric both runs measured, the change
is new median / old median, turned so that above 1 is better. The noise is
what the runs themselves measured: the wider of the two runs' spreads
(highest minus lowest repetition, relative to the median), never less than
``FLOOR``, nor than the metric's resolution where it has one (stdio's CPU
time comes in clock ticks). A change worse than the noise is *worse*, a
change better than it an *improvement*; anything inside it is noise. A
median of zero (or below) has no ratio: it is compared by the difference,
against the runs' absolute spread.

What fails the comparison (a *problem*, exit status 1):

- a REGRESSION: one of actorstate's own systems got worse beyond the noise
  on a pair-by-pair ratio (``A / B`` with A actorstate's), or on its raw
  figure when both runs are from the same machine (CPU model and cores).
  Each (case, system, metric) counts once, however many of its rows moved.
  Which systems are actorstate's is the case's ``ours`` in results.json
  (``Case.ours``), by default the first system of every comparison pair.
  A baseline that moved, or a raw figure on another machine, is shown as
  information only;
- a failure in the new run (a case, or a scenario's set-up);
- a lost row: a case or a system the old run measured that the new run,
  having run that scenario, did not (failed before it, or skipped it); a
  scenario the new run was asked to run but did not finish. Scenarios and
  backends the new run was not asked for (``--scenario``, ``--backend``)
  are listed as not run, and are no problem.

Two runs of different sizes cannot be compared: a quick run (``--quick``)
measures fewer calls on smaller sessions than a full one, so ``compare``
refuses them (:func:`refusal`) rather than flag the difference in size.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from benchmarks.report import failures
from benchmarks.stats import Range, better_ratio, figure, overloaded, pair_ratio
from benchmarks.suite import case_key

FLOOR = 0.05


@dataclasses.dataclass(frozen=True)
class Row:
    """One figure a run holds: its range, whether it is a ratio, whose it is, its resolution."""

    found: Range
    ratio: bool
    ours: bool
    # How coarsely the figure is measured, in its own unit (0: finely).
    resolution: float = 0.0


def refusal(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why two runs cannot be compared, or None when they can."""
    old_quick, new_quick = old["options"]["quick"], new["options"]["quick"]
    if old_quick != new_quick:
        kinds = {True: "a quick run (--quick)", False: "a full run"}
        return (
            f"cannot compare {kinds[new_quick]} with {kinds[old_quick]}: they measure different "
            "sizes; compare runs made with the same --quick"
        )
    return None


def ours(case: dict[str, Any]) -> set[str]:
    """actorstate's own systems of a case as results.json keeps it (see the module's docstring)."""
    if case.get("ours") is not None:
        return set(case["ours"])
    return {mine for mine, _ in case.get("comparisons", ())}


def same_machine(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool((old["cpu"], old["cores"]) == (new["cpu"], new["cores"]))


def _resolution(system: dict[str, Any], metric: dict[str, Any]) -> float:
    key = metric.get("resolution")
    if not key:
        return 0.0
    return max((float(run[key]) for run in system.get("runs", ()) if key in run), default=0.0)


def _rows(scenario: dict[str, Any]) -> dict[tuple[str, str, str], Row]:
    """(case, system or ratio, metric) -> its row, for every figure the scenario holds.

    Latencies of an overloaded system (``stats.overloaded``) are left out:
    they grow with the run's length and are no result.
    """
    rows: dict[tuple[str, str, str], Row] = {}
    for case in scenario["cases"]:
        key = case_key(case["params"])
        mine_set = ours(case)
        systems = case["systems"]
        for metric in scenario["metrics"]:
            latency = metric["unit"] == "ms"
            for name, system in systems.items():
                found = figure(system, metric["key"])
                if found is None or (latency and overloaded(system)):
                    continue
                rows[key, name, metric["key"]] = Row(
                    found, False, name in mine_set, _resolution(system, metric)
                )
            for mine, against in case["comparisons"]:
                if latency and (overloaded(systems[mine]) or overloaded(systems[against])):
                    continue
                ratio = pair_ratio(systems[mine], systems[against], metric["key"])
                if ratio is None:
                    continue
                relative = 0.0
                for name in (mine, against):
                    side = figure(systems[name], metric["key"])
                    if side is not None and side.median > 0:
                        relative += _resolution(systems[name], metric) / side.median
                rows[key, f"{mine} / {against}", metric["key"]] = Row(
                    ratio, True, mine in mine_set, relative * abs(ratio.median)
                )
    return rows


def _lost(
    name: str, old: dict[str, Any], new: dict[str, Any], backends: set[str] | None
) -> tuple[list[str], list[str]]:
    """The cases and systems of scenario ``name`` the old run measured and the new one did not:
    those it should have (each a problem), and those on a backend it was not asked to run."""
    lost, not_run = [], []
    new_cases = {case_key(case["params"]): case for case in new["cases"]}
    for case in old["cases"]:
        key = case_key(case["params"])
        if key not in new_cases:
            backend = case["params"].get("backend")
            if backends is not None and backend is not None and backend not in backends:
                not_run.append(f"  not run this time: {key} (--backend)")
            else:
                lost.append(f"  LOST {key}: not measured in the new run")
            continue
        if "failure" in new_cases[key]:
            continue  # what it did not measure is the failure's doing, counted once as a failure
        for system, found in case["systems"].items():
            if not found.get("runs"):
                continue
            now = new_cases[key]["systems"].get(system)
            if now is None:
                lost.append(f"  LOST {key} · {system}: not in the new run")
            elif "skipped" in now:
                lost.append(f"  LOST {key} · {system}: skipped in the new run ({now['skipped']})")
            elif not now.get("runs"):
                lost.append(f"  LOST {key} · {system}: no repetition finished in the new run")
    return lost, not_run


def _verdict(
    was: Range, now: Range, better: str, resolution: float
) -> tuple[float | None, float, bool | None]:
    """(change or None, noise, True: better beyond the noise, False: worse, None: inside it)."""
    if was.median > 0 and now.median > 0:
        change = better_ratio(now.median / was.median, better)
        noise = max(was.width, now.width, FLOOR, resolution / was.median, resolution / now.median)
        if change > 1 + noise:
            return change, noise, True
        if change < 1 / (1 + noise):
            return change, noise, False
        return change, noise, None
    # A zero (or negative) median has no ratio: the difference against the absolute spread.
    noise = max(was.high - was.low, now.high - now.low, resolution)
    difference = now.median - was.median
    if abs(difference) <= noise:
        return None, noise, None
    return None, noise, (difference > 0) == (better == "higher")


def compare(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], int]:
    """The lines to print, and how many problems (regressions, failures, lost rows) they name.

    Error handling:
        Raises ``ValueError`` with :func:`refusal`'s reason when the runs
        cannot be compared.
    """
    refused = refusal(old, new)
    if refused:
        raise ValueError(refused)
    old_machine, new_machine = old["machine"], new["machine"]
    lines = [
        f"old: {old['started']} at {old_machine['git_commit']} ({old_machine['cpu']}, {old_machine['cores']} cores)",
        f"new: {new['started']} at {new_machine['git_commit']} ({new_machine['cpu']}, {new_machine['cores']} cores)",
    ]
    machine_matches = same_machine(old_machine, new_machine)
    if not machine_matches:
        lines.append(
            "the runs are from different machines: only the A / B ratios can fail the comparison; "
            "raw figures are shown for information"
        )
    problems = 0
    failed = failures(new)
    if failed:
        lines.append("\nfailures in the new run (each a problem):")
        lines += [f"  FAILED {line}" for line in failed]
        problems += len(failed)
    old_failed = failures(old)
    if old_failed:
        lines.append("\nfailures in the old run (its figures there are missing):")
        lines += [f"  failed {line}" for line in old_failed]
    chosen = set(new.get("options", {}).get("scenarios", new["scenarios"]))
    backends = set(new["options"]["backends"]) if "backends" in new.get("options", {}) else None
    for name in old["scenarios"]:
        if name in new["scenarios"]:
            continue
        if name in chosen:
            lines.append(f"\n{name}: LOST: the new run did not finish it")
            problems += 1
        else:
            lines.append(f"\n{name}: not run this time")
    for name, scenario in new["scenarios"].items():
        if name not in old["scenarios"]:
            lines.append(f"\n{name}: not in the old run")
            continue
        lost, not_run = _lost(name, old["scenarios"][name], scenario, backends)
        problems += len(lost)
        better = {m["key"]: m["better"] for m in scenario["metrics"]}
        old_rows, new_rows = _rows(old["scenarios"][name]), _rows(scenario)
        shared = [row for row in new_rows if row in old_rows]
        changes: list[float] = []
        flagged: list[str] = []
        regressed: set[tuple[str, str, str]] = set()
        for row in shared:
            was, now = old_rows[row].found, new_rows[row].found
            resolution = max(old_rows[row].resolution, new_rows[row].resolution)
            change, noise, verdict = _verdict(was, now, better[row[2]], resolution)
            if change is not None:
                changes.append(change)
            if verdict is None:
                continue
            counts = new_rows[row].ours and (new_rows[row].ratio or machine_matches)
            if verdict:
                word = "improvement"
            elif counts:
                word = "REGRESSION"
                system = row[1].split(" / ")[0]
                regressed.add((row[0], system, row[2]))
            else:
                word = "worse"
            why = ""
            if not counts and not verdict:
                why = (
                    "; a baseline, for information"
                    if not new_rows[row].ours
                    else "; another machine, for information"
                )
            moved = (
                f"{change:.2f}x better-is-up; noise ±{noise:.0%}"
                if change is not None
                else f"noise ±{noise:,.4g}"
            )
            flagged.append(
                f"  {word:11} {row[0]} · {row[1]} · {row[2]}: {was.median:,.4g} -> {now.median:,.4g} "
                f"({moved}{why})"
            )
        problems += len(regressed)
        summary = f"\n{name}: {len(shared)} figures in common"
        if changes:
            middle = math.exp(sum(math.log(c) for c in changes) / len(changes))
            summary += f", geometric mean {middle:.2f}x (above 1: better)"
        summary += f"; {len(flagged)} beyond the noise, {len(regressed)} regression(s) of actorstate's"
        if lost:
            summary += f"; {len(lost)} lost"
        lines.append(summary)
        lines += lost
        lines += not_run
        lines += flagged
    return lines, problems
