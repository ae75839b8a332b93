"""Each tutorial's training loop *as published*: its batching, its extra work per step, its bugs, eager.

The recipes (:mod:`implementations.recipes`) run each tutorial's configuration with its bugs fixed, through
the fair approaches. This package answers two other questions: how slow is the loop the tutorial taught,
compared with the same math done well, and what did its bug cost? One module per tutorial rewrites its
loop as it ran: the tutorial's own initialisers, NumPy batches converted every step, per-step printing and
metric updates, and its mistakes. Nothing here is shared with the fair approaches, whose parity tests stay
as they are.

A loop is a :class:`PublishedLoop`: built from the raw uint8 arrays (:class:`RawData`, scaled by the loop
as the tutorial scales them), it advances one optimizer step per :meth:`~PublishedLoop.step`, with the
tutorial's per-step work included, so the harness can time a fixed number of steps and
:func:`run` can train to full length. Printing goes to ``out`` (``os.devnull`` in the harness: the
formatting and the tensor reads it forces still happen, only the terminal is spared).
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, TextIO

import numpy as np

from tfbench.errors import UsageError

# recipe -> "module:class" of its published loop (the notebook of Hands-On ML ch. 12 holds two loops).
LOOPS = {
    "ann_gradienttape": "ann_gradienttape:Loop",
    "doit_raw_cnn": "doit_raw_cnn:Loop",
    "raw_mlp_metal": "raw_mlp_metal:Loop",
    "homl_custom_loop": "homl_exercise10:CustomLoop",
    "homl_dual_optimizer": "homl_exercise10:DualOptimizerLoop",
    "dlwp_naive": "dlwp_naive:Loop",
}


@dataclass(frozen=True)
class RawData:
    """A dataset as ``load_data()`` returns it: uint8 images (N, 28, 28) and uint8 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def raw_data(dataset: str, data_dir=None, *, verify: bool = True, synthetic_sizes: tuple[int, int] = (6000, 1000),
             seed: int = 0) -> RawData:
    """The files' uint8 arrays (checksums checked unless ``verify`` is False); ``synthetic`` (for tests) is
    quantised to uint8 the same way."""
    from tfbench.implementations import datasets

    if dataset == "synthetic":
        train, test = datasets.synthetic(*synthetic_sizes, seed=seed)
        quantise = lambda x: np.round(x[..., 0] * 255).astype(np.uint8)  # noqa: E731
        return RawData(dataset, quantise(train.x), train.y.astype(np.uint8), quantise(test.x),
                       test.y.astype(np.uint8), f"synthetic(seed={seed})")
    (x_train, y_train), (x_test, y_test), source = datasets.load_arrays(dataset, data_dir, verify)
    return RawData(dataset, x_train, y_train, x_test, y_test, source)


class PublishedLoop(ABC):
    """One tutorial's loop, stepped one optimizer step at a time."""

    recipe: ClassVar[str]
    title: ClassVar[str]  # the tutorial, by title
    epochs: ClassVar[int]  # as published
    batch_size: ClassVar[int]
    metric: ClassVar[str]  # the figure the loop ends with: "train_accuracy", "val_accuracy" or "test_accuracy"
    steps_per_epoch: int  # set by the subclass from its data

    def __init__(self, data: RawData, *, seed: int = 0, out: TextIO | None = None):
        import keras

        # The tutorials draw from the global generators (np.random, TF's initialisers): seeding them makes
        # the run repeatable without changing a line of the loop.
        keras.utils.set_random_seed(seed)
        self.data = data
        self.out = out or sys.stdout
        self.steps_done = 0
        self.history: list[dict] = []

    def print(self, *args, **kwargs) -> None:
        print(*args, file=self.out, **kwargs)

    def begin_epoch(self, epoch: int) -> None:
        """What the tutorial does before an epoch's first step (0-based ``epoch``); some do nothing."""
        return None

    @abstractmethod
    def train_step(self, batch: int):
        """Batch number ``batch`` of the epoch, as the tutorial does it; returns a loss (or figure) to force."""

    def end_epoch(self, epoch: int) -> dict:
        """What the tutorial does after an epoch's last step; returns the figures it prints."""
        return {}

    @abstractmethod
    def result(self) -> dict:
        """The loop's final figures: at least ``metric``, computed as the tutorial computes it."""

    def step(self):
        """One optimizer step with the work the tutorial does around it (epoch start and end included)."""
        epoch, batch = divmod(self.steps_done, self.steps_per_epoch)
        if batch == 0:
            self.begin_epoch(epoch)
        loss = self.train_step(batch)
        self.steps_done += 1
        if batch == self.steps_per_epoch - 1:
            self.history.append({"epoch": epoch + 1, **self.end_epoch(epoch)})
        return loss


def get_loop(recipe: str) -> type[PublishedLoop]:
    """The published loop of ``recipe``; a usage error for anything that has none."""
    if recipe not in LOOPS:
        raise UsageError(f"{recipe!r} has no published loop; --as-published takes a recipe: {', '.join(LOOPS)}")
    module, cls = LOOPS[recipe].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def run(loop: PublishedLoop, *, epochs: int | None = None, steps: int | None = None) -> dict:
    """Train ``epochs`` epochs (default: as published) or exactly ``steps`` steps; return the final figures."""
    total = steps if steps is not None else (epochs or loop.epochs) * loop.steps_per_epoch
    for _ in range(total):
        loop.step()
    return {**loop.result(), "steps": loop.steps_done, "epochs_run": loop.steps_done / loop.steps_per_epoch,
            "history": loop.history}


def documented_figure(recipe, result: dict, at_epoch: int | None = None) -> float | None:
    """The loop's value of the figure ``recipe`` documents, after the epoch it documents it (or ``at_epoch``).

    A training accuracy is the running mean the loop printed for that epoch; a validation or test accuracy
    is measured once, after the last step. None if the loop has no such figure.
    """
    if recipe.documented_metric == "train_accuracy":
        epoch = at_epoch or recipe.documented_epoch
        history = result.get("history") or []
        return history[epoch - 1].get("accuracy") if len(history) >= epoch else None
    return result.get(recipe.documented_metric)
