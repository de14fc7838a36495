"""The live progress display: a bar and the running system on a terminal, plain lines elsewhere.

Progress goes to stderr, so the summary on stdout stays clean to pipe.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

if TYPE_CHECKING:
    from types import TracebackType


class Progress:
    """How far the run is: measurements done of all planned, the case and system running now."""

    def __init__(self, total: int) -> None:
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.total = total
        self.done = 0
        self.current_case = ""
        self.started = time.perf_counter()
        # The bar first: on a narrow terminal the long description is what gets cut.
        self.bar = RichProgress(
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> Progress:
        if self.live:
            self.bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.live:
            self.bar.stop()

    def case(self, scenario: str, key: str) -> None:
        self.current_case = f"{scenario}: {key}"
        if not self.live:
            elapsed = time.perf_counter() - self.started
            print(
                f"[{elapsed:6.1f} s, {self.done}/{self.total}] {self.current_case}",
                file=sys.stderr,
                flush=True,
            )

    def add_total(self, runs: int) -> None:
        """Plan ``runs`` more measurements (a scenario's, known once it is set up)."""
        self.total += runs
        self.bar.update(self.task, total=self.total)

    def running(self, system: str) -> None:
        if self.live:
            self.bar.update(self.task, description=f"{self.current_case} · {system}")

    def advance(self) -> None:
        self.done += 1
        if self.live:
            self.bar.advance(self.task)

    def failed(self, key: str, failure: str) -> None:
        self.console.print(f"[bold red]FAILED[/] {key}: {failure}", highlight=False)
