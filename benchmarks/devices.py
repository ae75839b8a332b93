"""Devices: find the CPU, CUDA GPUs and Apple Silicon GPUs (tensorflow-metal), and use them honestly.

* CUDA GPUs show as ``GPU`` devices on a CUDA build of TensorFlow; memory
  growth is turned on so that one record does not claim all GPU memory.
* On macOS arm64 with the ``tensorflow-metal`` plugin the Apple GPU shows as a
  ``GPU`` device too: we call it ``metal``. The plugin does not support XLA
  (``jit_compile``), so XLA records on it are ``unsupported``, not failures.
* GPU work is asynchronous: :func:`synchronize` waits for it before a clock is read.

Everything TensorFlow-specific goes through a ``tf`` argument and the
platform through ``system``/``machine``, so tests can pass fakes.
"""

from __future__ import annotations

import functools
import platform as _platform
import re
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from tfbench.errors import UsageError

DEVICE_CHOICES = ("auto", "all", "cpu", "gpu", "metal")


@dataclass(frozen=True)
class Device:
    name: str  # "cpu", "gpu:0", "metal:0": what records say
    kind: str  # "cpu" | "gpu" | "metal"
    tf_device: str  # for tf.device(): "/CPU:0", "/GPU:0"
    description: str
    details: dict = field(default_factory=dict)

    def unsupported_reason(self, mode: str) -> str | None:
        if self.kind == "metal" and mode == "xla":
            return "the tensorflow-metal plugin does not support XLA (jit_compile=True)"
        return None

    def to_json(self) -> dict:
        return asdict(self)


def metal_plugin_version() -> str | None:
    try:
        return metadata.version("tensorflow-metal")
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def cpu_model() -> str:
    """The CPU's brand string, e.g. "Apple M1 Pro" or "AMD EPYC 7B13".

    py-cpuinfo reads it on every platform (sysctl on macOS, where ``platform.processor()`` says only
    "arm"; /proc/cpuinfo or lscpu on Linux; the registry on Windows). Without it: /proc/cpuinfo, then
    the platform module. Cached: py-cpuinfo takes a fraction of a second.
    """
    try:
        import cpuinfo

        brand = cpuinfo.get_cpu_info().get("brand_raw")
    except Exception:  # its probes can fail on an unusual system; what the OS says is the fallback
        brand = None
    if brand and brand.strip():
        return re.sub(r"\s+", " ", brand).strip()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


def detect(tf=None, *, system: str | None = None, machine: str | None = None,
           metal_version: str | None | bool = False) -> list[Device]:
    """All devices TensorFlow can use here, the CPU first."""
    if tf is None:
        import tensorflow as tf
    system = system or _platform.system()
    machine = machine or _platform.machine()
    if metal_version is False:
        metal_version = metal_plugin_version()
    devices = [Device("cpu", "cpu", "/CPU:0", cpu_model())]
    is_metal = system == "Darwin" and machine == "arm64" and metal_version is not None
    build = dict(tf.sysconfig.get_build_info())
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            details = dict(tf.config.experimental.get_device_details(gpu))
        except Exception:  # details are optional; some plugins do not implement them
            details = {}
        if is_metal:
            description = details.get("device_name", "Apple GPU (tensorflow-metal)")
            devices.append(Device(f"metal:{index}", "metal", f"/GPU:{index}", description,
                                  {"tensorflow_metal": metal_version, **details}))
        else:
            description = details.get("device_name", gpu.name)
            extra = {k: build.get(k) for k in ("cuda_version", "cudnn_version") if build.get(k)}
            devices.append(Device(f"gpu:{index}", "gpu", f"/GPU:{index}", description, {**extra, **details}))
    return devices


def select(devices: list[Device], choice: str) -> list[Device]:
    """The devices ``--device`` asks for; a missing one is a usage error."""
    if choice not in DEVICE_CHOICES:
        raise UsageError(f"unknown device {choice!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    if choice == "all":
        return devices
    if choice == "auto":  # the accelerators if there are any, else the CPU
        return [d for d in devices if d.kind != "cpu"] or devices[:1]
    chosen = [d for d in devices if d.kind == choice]
    if not chosen:
        found = ", ".join(d.name for d in devices)
        raise UsageError(f"no {choice} device here (found: {found}); use --device cpu or --device auto")
    return chosen


def enable_memory_growth(tf=None) -> list[str]:
    """Let GPU memory grow as needed instead of reserving it all; must run before the GPUs are used."""
    if tf is None:
        import tensorflow as tf
    enabled = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
            enabled.append(gpu.name)
        except (RuntimeError, ValueError):  # already initialised, or unsupported by a plugin
            pass
    return enabled


def synchronize(device: Device, tf=None) -> None:
    """Wait until ``device`` has finished all queued work (a no-op on the CPU, where ops are synchronous)."""
    if device.kind == "cpu":
        return
    if tf is None:
        import tensorflow as tf
    tf.test.experimental.sync_devices()


def _proc_status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _allocator_memory(device: Device, tf) -> dict | None:
    """TensorFlow's allocator statistics of ``device`` (``current`` and ``peak`` bytes), or None without them.

    TensorFlow's CPU allocator keeps them too (TF 2.21), so the CPU and a GPU are measured alike: the
    tensors TensorFlow allocates, not the process's resident memory.
    """
    try:
        info = tf.config.experimental.get_memory_info(device.tf_device.strip("/"))
        return {"current": int(info["current"]), "peak": int(info["peak"])}
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class MemoryWindow:
    """One record's memory measurement under way: where it is read from and what was held at its start."""

    source: str  # "allocator" (TensorFlow's allocator statistics) | "rss" (the process's resident memory)
    baseline: int


def start_memory_window(device: Device, tf=None) -> MemoryWindow | None:
    """Reset the high-water mark and note what is held now, before one record builds and runs.

    TensorFlow's allocator statistics where the device has them (``reset_memory_stats``); else, on
    Linux, the process's resident memory: freed memory is handed back to the system first and writing 5
    to ``/proc/self/clear_refs`` resets the peak (``VmHWM``) to the current resident size. None where
    neither can be reset: a process-wide high-water mark is not a record's own figure.
    """
    if tf is None:
        import tensorflow as tf
    try:
        tf.config.experimental.reset_memory_stats(device.tf_device.strip("/"))
        stats = _allocator_memory(device, tf)
    except (ValueError, RuntimeError, AttributeError):  # not every plugin keeps memory stats
        stats = None
    if stats is not None:
        return MemoryWindow("allocator", stats["current"])
    if device.kind != "cpu":
        return None
    _release_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    resident = _proc_status_bytes("VmRSS")
    return None if resident is None else MemoryWindow("rss", resident)


def record_peak_memory(device: Device, window: MemoryWindow | None, tf=None) -> int | None:
    """The record's own peak: the high-water mark since :func:`start_memory_window`, above its baseline."""
    if window is None:
        return None
    if window.source == "allocator":
        if tf is None:
            import tensorflow as tf
        stats = _allocator_memory(device, tf)
        peak = None if stats is None else stats["peak"]
    else:
        peak = _proc_status_bytes("VmHWM")
    return None if peak is None else max(0, peak - window.baseline)


def _release_freed_memory() -> None:
    """Hand memory already freed back to the operating system (glibc's ``malloc_trim``), so that what a
    record allocates next shows as new resident pages instead of reusing pages an earlier record left."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the baseline then includes freed, reusable memory
        pass


def peak_memory_bytes(device: Device, tf=None) -> int | None:
    """Peak memory since the last reset: the device allocator's where it keeps statistics, else the
    process's peak resident memory (the whole process's high-water mark unless reset)."""
    if tf is None:
        import tensorflow as tf
    stats = _allocator_memory(device, tf)
    if stats is not None:
        return stats["peak"]
    if device.kind == "cpu":
        peak = _proc_status_bytes("VmHWM")
        if peak is not None:
            return peak
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux
    return None


def split_cpu(count: int, tf=None) -> int:
    """Split the CPU into ``count`` logical devices, so that a MirroredStrategy has ``count`` replicas.

    Must run before TensorFlow's runtime starts; if it has started already, the split in force is kept
    (and returned) when it has enough devices. Logical devices share the same cores and memory: a
    strategy over them measures its own overhead, never a speed-up.
    """
    if tf is None:
        import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        return count
    except RuntimeError:  # the runtime is up: logical devices can no longer be changed
        have = len(tf.config.list_logical_devices("CPU"))
        if have < count:
            raise UsageError(f"{count} logical CPU devices are needed but TensorFlow already started with "
                             f"{have}; split the CPU before TensorFlow starts (tfbench run does)") from None
        return have
