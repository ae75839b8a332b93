"""Errors the user can fix. The CLI prints them as one line and exits with status 2.

Anything else that escapes is a bug and keeps its traceback.
"""


class TfbenchError(Exception):
    """Base of every error whose message tells the user what is wrong and how to fix it."""


class UsageError(TfbenchError):
    """Bad command-line input: an unknown option value, a file that cannot be written, a bad combination."""


class ConfigError(TfbenchError, ValueError):
    """A bad value: an unknown name, a batch size <= 0, an impossible combination."""


class Unsupported(TfbenchError, NotImplementedError):
    """An approach cannot run this workload or mode; the message says why."""


class DatasetError(TfbenchError):
    """A dataset cannot be had, or its files are corrupt; the message names the file or the fix."""


class WriteError(TfbenchError):
    """A file cannot be written (before or during a run); the message names the path and the cause."""


class TrainingDiverged(TfbenchError):
    """The training loss became NaN or infinite; the message says in which epoch and at which step.

    ``history`` holds the epochs completed before (the harness and ``tfbench train --json`` keep them).
    """

    def __init__(self, message: str, *, epoch: int, step: str | None = None, history: list | None = None):
        super().__init__(message)
        self.epoch, self.step, self.history = epoch, step, list(history or [])
