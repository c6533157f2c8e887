"""The live progress of ``envsync push`` on a terminal, drawn with ``rich``.

``rich`` draws the bar, the rate and the time left, knows when stderr is not a terminal, and
honours ``NO_COLOR``; it is imported only when a bar is drawn, so a command whose output goes
to a pipe never pays for it.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from envsync.cli.awsoutput import plural

__all__ = ["SLOW_PUSH_SECONDS", "Pace", "Progress"]


class Progress:
    """Live progress of a push on stderr, drawn by ``rich`` only when stderr is a terminal.

    The bar advances with each write AWS accepts (unchanged keys settle at once, after the
    plan), with the rate and the time left, so a slow push shows itself. When the target's
    write ceiling makes the push long, a line says so first and names the flag that raises
    it: at SSM's default 3 writes/s, 2,000 keys take 11 minutes, and a still bar would look
    like a hang.
    """

    def __init__(self, console: Console, pace: Pace) -> None:
        self._console = console
        self._pace = pace
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None

    @classmethod
    def maybe(cls, *, enabled: bool, pace: Pace) -> Progress | None:
        console = Console(stderr=True)
        return cls(console, pace) if enabled and console.is_terminal else None

    def plan(self, total: int, writes: int) -> None:
        seconds = writes / self._pace.rate
        if seconds >= SLOW_PUSH_SECONDS:
            self._console.print(
                f"{plural(writes, 'write')} at most {self._pace.rate:g}/s ({self._pace.why}): "
                f"about {_duration(seconds)}; {self._pace.flag} raises the ceiling",
                markup=False,
                highlight=False,
            )
        self._bar.start()
        self._task = self._bar.add_task("push", total=total)

    def tick(self, key: str, outcome: str) -> None:
        if self._task is not None and outcome != "stopped":  # the bar counts settled keys
            self._bar.advance(self._task)

    def done(self) -> None:
        if self._task is not None:
            self._bar.stop()


SLOW_PUSH_SECONDS: Final = 10.0
"""A push whose writes the ceiling stretches past this says why before it starts."""


@dataclasses.dataclass(frozen=True)
class Pace:
    """The write ceiling a push runs under, why it is what it is, and the flag that sets it."""

    rate: float
    why: str
    flag: str


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} keys/s")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
