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
