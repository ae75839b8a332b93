"""The report's memory figures: each step-time record's own peak, and what the harness placed beforehand.

``peak_memory_bytes`` is, since the per-record measurement, the device allocator's high-water mark during
the record's build, first call and warm-up, above what the process held before it; older records hold the
process's peak resident memory, which never goes down. ``harness_preplaced_bytes`` is the batches the
harness put on the device for the whole group before any configuration was built.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd


def _mib(value: float) -> str:
    rounded = float(f"{value / 2**20:.3g}")
    decimals = max(3 - 1 - math.floor(math.log10(abs(rounded))), 0) if rounded else 0
    return f"{rounded:,.{decimals}f} MiB"


def memory_lines(group: pd.DataFrame, grid: Callable) -> list[str]:
    """Per-record peak memory of one device and batch size as a grid (``grid(frame, cell)``), with the
    harness's own pre-placed batches."""
    memory = group.dropna(subset=["peak_memory_bytes"])
    if memory.empty:
        return []
    per_record = "harness_preplaced_bytes" in memory and memory["harness_preplaced_bytes"].notna().any()
    if per_record:
        preplaced = memory["harness_preplaced_bytes"].dropna().astype(float)
        span = _mib(preplaced.min()) if preplaced.min() == preplaced.max() else \
            f"{_mib(preplaced.min())}–{_mib(preplaced.max())}"
        intro = ("Each record's own peak memory: the device allocator's high-water mark while it was built, "
                 "first called and warmed up, above what was held before it. Not included: the batches the "
                 f"harness placed on the device beforehand for the whole group, {span}.")
        if (memory["approach"] == "keras_fit").any():
            intro += (" keras_fit's figure grows with those batches, not only with the network: `fit` reads them "
                      "through a `tf.data` pipeline (`Dataset.from_tensor_slices`), which holds copies of them "
                      "(docs/performance.md, section 6); in your own training it holds your data instead.")
    else:
        intro = "Peak memory of the process (older records: its high-water mark, whatever it held at its largest):"
    return [intro, "", grid(memory, lambda r: _mib(r["peak_memory_bytes"])), ""]
