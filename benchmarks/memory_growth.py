"""Memory growth: read process memory as a run goes on, and tell a leak's slope from the allocator's noise.

The reading (:func:`memory_reader`): on the CPU, the process's resident memory (``VmRSS``, so a Python-side
leak such as a list that grows every step shows too); on a GPU, the device allocator's bytes in use
(TensorFlow's ``get_memory_info(...)["current"]``), where a leaked tensor lives.

The slope (:func:`growth`): after a warm-up (the first :data:`WARMUP_FRACTION` of the units, where caches,
traces and the allocator's pools fill), the curve is cut into :data:`BLOCKS` contiguous blocks and an
ordinary least-squares line is fitted to the blocks' mean memory against their mean unit ("batch means":
successive readings are correlated, block means much less, so the t interval on them is honest where one on
every reading would be far too narrow). The 95% interval is the slope +- t(0.975, blocks - 2) x its standard
error. A slope is *flagged* when the interval lies above zero and the growth it implies over the measured
units exceeds the noise floor: the larger of :data:`MIN_GROWTH_BYTES` and twice the spread of the block means
around the line (a clean loop's RSS wanders by pages; that is not a leak).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WARMUP_FRACTION = 0.2
BLOCKS = 10
MIN_GROWTH_BYTES = 1 << 20  # below 1 MiB over the whole run, no user would call it a leak
MAX_CURVE_POINTS = 200


def rss_bytes() -> int | None:
    """The process's resident memory now (Linux ``VmRSS``); None where /proc is not there."""
    from tfbench.benchmarks.devices import _proc_status_bytes

    return _proc_status_bytes("VmRSS")


def memory_reader(device, tf, rss: Callable[[], int | None] = rss_bytes) -> tuple[str, Callable[[], int]]:
    """(what is read, a zero-argument reader of bytes): the allocator's bytes in use on a GPU, else RSS."""
    if device.kind != "cpu":
        name = device.tf_device.strip("/")
        try:
            tf.config.experimental.get_memory_info(name)["current"]
            return "allocator", lambda: int(tf.config.experimental.get_memory_info(name)["current"])
        except (ValueError, RuntimeError, KeyError, TypeError, AttributeError):
            pass  # a plugin without allocator statistics: the process's memory instead
    if rss() is None:
        raise RuntimeError("no memory reading here: /proc/self/status has no VmRSS and the device keeps no "
                           "allocator statistics")
    return "rss", lambda: int(rss())


# Two-sided 95% Student t quantiles by degrees of freedom (no SciPy needed for the few used here).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    usable = [d for d in _T975 if d <= df]
    return _T975[max(usable)] if usable else _T975[1]


@dataclass(frozen=True)
class Growth:
    slope: float  # bytes per unit
    ci: tuple[float, float]
    noise_bytes: float  # the floor the implied growth must exceed
    units: int
    flagged: bool

    def metrics(self) -> dict:
        return {"growth_bytes_per_unit": self.slope, "growth_ci": list(self.ci), "growth_units": self.units,
                "growth_flagged": self.flagged}


def growth(curve: Sequence[tuple[float, float]], warmup_fraction: float = WARMUP_FRACTION,
           blocks: int = BLOCKS) -> Growth:
    """The slope of ``curve`` ([(unit index, bytes)...]) after the warm-up, its 95% interval and the flag."""
    points = sorted(curve)
    if len(points) < 4:
        raise ValueError(f"a memory curve needs at least 4 readings to fit a slope, got {len(points)}")
    kept = points[int(len(points) * warmup_fraction):]
    blocks = max(3, min(blocks, len(kept)))
    size = len(kept) / blocks
    groups = [kept[round(i * size):round((i + 1) * size)] for i in range(blocks)]
    xs = [sum(p[0] for p in g) / len(g) for g in groups if g]
    ys = [sum(p[1] for p in g) / len(g) for g in groups if g]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    residuals = [y - (mean_y + slope * (x - mean_x)) for x, y in zip(xs, ys)]
    spread = math.sqrt(sum(r * r for r in residuals) / (n - 2)) if n > 2 else 0.0
    half = t975(n - 2) * spread / math.sqrt(sxx) if sxx else math.inf
    span = kept[-1][0] - kept[0][0]
    noise = max(MIN_GROWTH_BYTES, 2 * spread)
    flagged = slope - half > 0 and slope * span > noise
    return Growth(slope, (slope - half, slope + half), noise, len(points), flagged)


def subsample(curve: Sequence[tuple[float, float]], limit: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """At most ``limit`` evenly spaced points of ``curve``, its first and last kept, as [[unit, bytes]...]."""
    points = list(curve)
    if len(points) <= limit:
        return [[float(u), float(b)] for u, b in points]
    picks = sorted({round(i * (len(points) - 1) / (limit - 1)) for i in range(limit)})
    return [[float(points[i][0]), float(points[i][1])] for i in picks]
