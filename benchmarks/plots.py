"""PNG plots of a run: a line per series against the scenario's x parameter, or bars.

Every point is a median with its lowest and highest repetition as the error
bar, so a plot shows the noise along with the result.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt

from benchmarks.stats import Range, figure


def _series(scenario: dict[str, Any], metric: str) -> dict[str, list[tuple[float, Range]]]:
    """Points by series: one series per system and per value of the other parameters."""
    x = scenario["x"]
    series: dict[str, list[tuple[float, Range]]] = {}
    for case in scenario["cases"]:
        rest = " · ".join(str(value) for name, value in case["params"].items() if name != x)
        for system_name, system in case["systems"].items():
            found = figure(system, metric)
            if found is not None:
                label = f"{rest} · {system_name}" if rest else system_name
                series.setdefault(label, []).append((float(case["params"][x]), found))
    return series


def _errors(points: list[Range]) -> list[list[float]]:
    return [[p.median - p.low for p in points], [p.high - p.median for p in points]]


def _line_plot(axes: Any, scenario: dict[str, Any], metric: dict[str, Any]) -> None:
    for label, points in _series(scenario, metric["key"]).items():
        points.sort(key=lambda point: point[0])
        ranges = [found for _, found in points]
        axes.errorbar(
            [x for x, _ in points],
            [r.median for r in ranges],
            yerr=_errors(ranges),
            label=label,
            marker="o",
            capsize=3,
        )
    axes.set_xlabel(scenario["x"])
    if scenario["log_x"]:
        axes.set_xscale("log")


def _bar_plot(axes: Any, scenario: dict[str, Any], metric: dict[str, Any]) -> None:
    cases = scenario["cases"]
    systems = list(dict.fromkeys(name for case in cases for name in case["systems"]))
    width = 0.8 / max(1, len(systems))
    for index, name in enumerate(systems):
        ranges = [figure(case["systems"].get(name, {}), metric["key"]) for case in cases]
        positions = [i + index * width for i, found in enumerate(ranges) if found is not None]
        present = [found for found in ranges if found is not None]
        if present:
            axes.bar(
                positions, [r.median for r in present], width, yerr=_errors(present), label=name, capsize=3
            )
    axes.set_xticks(
        [i + width * (len(systems) - 1) / 2 for i in range(len(cases))],
        ["\n".join(f"{k}={v}" for k, v in case["params"].items()) for case in cases],
        fontsize=7,
    )


def plot_scenario(name: str, scenario: dict[str, Any], folder: str) -> list[str]:
    """Draw one scenario's plot metrics; the PNG file names written (none without data)."""
    metrics = [m for m in scenario["metrics"] if m["key"] in scenario["plot_metrics"]]
    if not metrics or not scenario["cases"]:
        return []
    distinct_x = {case["params"].get(scenario["x"]) for case in scenario["cases"]} if scenario["x"] else set()
    line = len(distinct_x) > 1
    columns = min(2, len(metrics))
    rows = -(-len(metrics) // columns)
    fig, grid = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    for axes, metric in zip(grid.flat, metrics, strict=False):
        (_line_plot if line else _bar_plot)(axes, scenario, metric)
        axes.set_ylabel(f"{metric['label']} ({metric['unit']})")
        if line and metric["unit"] == "ms":  # latencies span orders of magnitude between cases
            axes.set_yscale("log")
        axes.grid(True, alpha=0.3)
    for axes in list(grid.flat)[len(metrics) :]:
        axes.set_visible(False)
    handles, labels = grid[0][0].get_legend_handles_labels()
    fig.suptitle(scenario["title"])
    fig.tight_layout()
    # Below the plots, two series to a row; "tight" saving keeps it all in the image.
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8)
    file_name = f"{name}.png"
    fig.savefig(os.path.join(folder, file_name), dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [file_name]


def plot_all(results: dict[str, Any], folder: str) -> dict[str, list[str]]:
    return {name: plot_scenario(name, scenario, folder) for name, scenario in results["scenarios"].items()}
