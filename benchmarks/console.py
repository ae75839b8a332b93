"""The suite's progress lines on the console, kept apart from TensorFlow's own messages.

TensorFlow's C++ runtime writes its start-up messages (oneDNN, CUDA drivers, cuInit) to the same stderr,
some before its logging is even set up, so no setting silences all of them (``TF_CPP_MIN_LOG_LEVEL`` only
some). Rather than hide them, the suite says when TensorFlow starts, so what follows is known to be
TensorFlow's, and prefixes each of its own lines, so they stand out and can be filtered
(``2>&1 | grep '^tfbench |'``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

PREFIX = "tfbench | "


def progress(quiet: bool = False, stream: TextIO | None = None) -> Callable[..., None]:
    """A log function: each message one prefixed line, flushed at once (stderr by default); nothing if quiet."""
    if quiet:
        return lambda *args, **kwargs: None

    def log(*args, **kwargs) -> None:
        text = " ".join(str(arg) for arg in args)
        for line in text.splitlines() or [""]:
            print(PREFIX + line, file=stream or sys.stderr, flush=True)

    return log


def starting_tensorflow(log: Callable[..., None]) -> None:
    """Said just before TensorFlow is imported: the lines that follow without the prefix are TensorFlow's.
    Nothing to say when it is already running (a second run in one process, a notebook): no start-up follows."""
    if "tensorflow" not in sys.modules:
        log("starting TensorFlow (its own start-up messages, unprefixed, follow)")


class RunProgress:
    """The run's progress: a live bar (records done of all, the running job, the ETA) on a terminal, drawn with
    ``rich``; on anything else (a pipe, a CI log) the prefixed lines of :func:`progress` alone, and with
    ``quiet`` nothing at all.

    Call it as a log function; :meth:`start`, :meth:`working` and :meth:`advance` drive the bar, :meth:`stop`
    removes it. A bar that was never started leaves no trace.
    """

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        # Only a terminal gets control codes: a redirected stderr keeps plain lines that grep can filter.
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self._lines = progress(quiet=quiet, stream=self.stream)
        self._bar = None
        self._task = None

    def __call__(self, *args, **kwargs) -> None:
        if self._bar is not None:  # printed above the bar, which rich redraws below
            text = " ".join(str(arg) for arg in args)
            for line in text.splitlines() or [""]:
                self._bar.console.print(PREFIX + line, markup=False, highlight=False, soft_wrap=True)
        else:
            self._lines(*args)

    def start(self, total: int) -> None:
        """Show the bar for ``total`` records (only on a terminal)."""
        if not self.live or self._bar is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, force_terminal=True)
        self._bar = Progress(TextColumn("tfbench"), BarColumn(), MofNCompleteColumn(), TextColumn("records"),
                             TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                             TextColumn("{task.description}"), console=console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task("", total=total, eta="?")

    def working(self, label: str, eta_s: float | None = None) -> None:
        """The job now running, and the seconds the run should still take."""
        if self._bar is not None:
            self._bar.update(self._task, description=label, **({} if eta_s is None else {"eta": _seconds(eta_s)}))

    def advance(self, records: int, eta_s: float | None = None) -> None:
        """``records`` more are done."""
        if self._bar is not None:
            self._bar.update(self._task, advance=records, **({} if eta_s is None else {"eta": _seconds(eta_s)}))

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None


def _seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
