"""What the results were measured on: versions, hardware, settings. Stored in every results file.

Besides versions, the machine state that moves timings: the CPU's model (py-cpuinfo) and its frequency
governor where Linux exposes it, and each GPU's name, driver and memory (``nvidia-smi`` for CUDA GPUs,
TensorFlow's device details otherwise). Everything that runs a program or reads a system file takes it as
an argument, so tests pass fakes.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from tfbench.benchmarks.devices import Device, cpu_model, metal_plugin_version

REPO = Path(__file__).resolve().parent.parent


def machine_id() -> str:
    """A stable id of this machine that does not reveal its hostname (a hash of /etc/machine-id)."""
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            raw = Path(candidate).read_text().strip()
        except OSError:
            continue
        if raw:
            break
    else:
        raw = platform.node()
    return hashlib.sha256(f"tf-training-bench:{raw}".encode()).hexdigest()[:12]


def git_commit(repo: Path = REPO) -> str | None:
    """The suite's commit, with "-dirty" when the working tree has changes to tracked files."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cpu_governor(cpus: Path = Path("/sys/devices/system/cpu")) -> str | None:
    """Linux's CPU frequency governor: "performance", or "powersave (cpu0-1), performance (cpu2-3)" when the
    cores differ; None where the system does not expose it (macOS, most containers and VMs).

    "powersave" or "ondemand" lower the clock when idle, so the first calls after a pause run slower: a
    cause of noise worth seeing beside the timings.
    """
    governors = {}
    for path in cpus.glob("cpu[0-9]*/cpufreq/scaling_governor"):
        try:
            governors[int(path.parent.parent.name[3:])] = path.read_text().strip()
        except (OSError, ValueError):
            continue
    if not governors:
        return None
    if len(set(governors.values())) == 1:
        return next(iter(governors.values()))
    spans: list[list] = []  # [governor, first cpu, last cpu] runs of consecutive cpus
    for cpu in sorted(governors):
        if spans and spans[-1][0] == governors[cpu] and spans[-1][2] == cpu - 1:
            spans[-1][2] = cpu
        else:
            spans.append([governors[cpu], cpu, cpu])
    return ", ".join(f"{g} (cpu{a})" if a == b else f"{g} (cpu{a}-{b})" for g, a, b in spans)


NVIDIA_SMI = ["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total", "--format=csv,noheader,nounits"]


def nvidia_smi_gpus(run: Callable = subprocess.run) -> list[dict]:
    """Every NVIDIA GPU as nvidia-smi lists it: index, name, driver and memory; [] without nvidia-smi."""
    try:
        output = run(NVIDIA_SMI, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in output.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        index, name, driver, memory_mib = fields
        gpus.append({"index": int(index), "name": name, "driver": _known(driver),
                     "memory_bytes": int(float(memory_mib) * 2**20) if re.fullmatch(r"\d+(\.\d+)?", memory_mib)
                     else None})
    return gpus


def _known(value: str) -> str | None:
    """nvidia-smi's value, or None for its "[N/A]" / "[Not Supported]"."""
    return None if not value or value.startswith("[") else value


def _visible_index(tf_index: int, environ: dict) -> int:
    """The nvidia-smi index of TensorFlow's GPU ``tf_index``: through CUDA_VISIBLE_DEVICES when it lists
    indices, else the same index."""
    visible = [part.strip() for part in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    if visible and all(part.isdigit() for part in visible) and tf_index < len(visible):
        return int(visible[tf_index])
    return tf_index


def gpu_info(devices: Iterable[Device], *, run: Callable = subprocess.run, environ: dict | None = None) -> list[dict]:
    """Name, driver and memory of each GPU measured on.

    A CUDA GPU's facts come from nvidia-smi, matched by index (through CUDA_VISIBLE_DEVICES) and checked by
    name; without a match, from TensorFlow's device details (no driver or memory there). An Apple GPU
    shares the machine's memory, which is what it can use: its size, from sysctl.
    """
    environ = os.environ if environ is None else environ
    gpus = [d for d in devices if d.kind in ("gpu", "metal")]
    smi = nvidia_smi_gpus(run) if any(d.kind == "gpu" for d in gpus) else []
    used: set[int] = set()
    info = []
    for device in gpus:
        tf_index = int(device.tf_device.rsplit(":", 1)[1])
        capability = device.details.get("compute_capability")  # TensorFlow gives (major, minor)
        if capability is not None:
            capability = ".".join(map(str, capability)) if isinstance(capability, (list, tuple)) else str(capability)
        entry = {"index": tf_index, "name": device.description, "driver": None, "memory_bytes": None,
                 "compute_capability": capability, "source": "tensorflow"}
        if device.kind == "gpu":
            # TensorFlow names a GPU by its details' device_name; without details only "/physical_device:..."
            named = not device.description.startswith("/physical_device:")
            expected = _visible_index(tf_index, environ)
            candidates = [g for g in smi if g["index"] == expected and (g["name"] == device.description or not named)]
            candidates = candidates or [g for g in smi if g["index"] not in used and g["name"] == device.description]
            if candidates:
                used.add(candidates[0]["index"])
                entry.update(candidates[0], index=tf_index, source="nvidia-smi")
        else:
            memory = _sysctl_memsize(run)
            if memory:
                entry.update(memory_bytes=memory, source="tensorflow; memory: sysctl hw.memsize (unified)")
        info.append(entry)
    return info


def _sysctl_memsize(run: Callable) -> int | None:
    try:
        return int(run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=10,
                       check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


# The CPU features that decide reduced precision and matmul speed, by the names py-cpuinfo reports
# (Linux's /proc/cpuinfo names on x86; ARM's names, e.g. asimdhp for float16 arithmetic, bf16).
DECISIVE_CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                      "amx_bf16", "amx_fp16", "amx_int8", "neon", "asimd", "asimdhp", "fphp", "bf16", "i8mm",
                      "sve", "sme")


def cpu_flags(info: Callable[[], dict] | None = None) -> list[str]:
    """Which of :data:`DECISIVE_CPU_FLAGS` this CPU reports (py-cpuinfo's ``flags``), in that order.

    bfloat16 pays on a CPU with native bfloat16 dot products (avx512_bf16, amx_bf16; ARM bf16); float16 with
    native float16 arithmetic (avx512_fp16, amx_fp16; ARM asimdhp); without them the 16-bit types are
    converted around float32 arithmetic or emulated (f16c only converts). [] when py-cpuinfo reports no
    flags (as on some Apple silicon systems).
    """
    if info is None:
        try:
            import cpuinfo

            info = cpuinfo.get_cpu_info
        except ImportError:
            return []
    try:
        reported = {str(flag).lower() for flag in info().get("flags", [])}
    except Exception:  # its probes can fail on an unusual system: no flags rather than no results file
        return []
    return [flag for flag in DECISIVE_CPU_FLAGS if flag in reported]


def capture(tf, devices, threads: dict) -> dict:
    import keras
    import numpy

    build = {k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
             for k, v in dict(tf.sysconfig.get_build_info()).items()}
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(terse=True),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": cpu_count(),
        "cpu_governor": cpu_governor(),
        "cpu_flags": cpu_flags(),
        "gpus": [d.description for d in devices if d.kind in ("gpu", "metal")],
        "gpu_info": gpu_info(devices),
        "tensorflow_metal": metal_plugin_version(),
        "tf_build_info": build,
        "threads": threads,
        "git_commit": git_commit(),
        "machine_id": machine_id(),
        "argv": sys.argv[1:],
    }


# --- what actually ran (issue 24): read back after the build, per record --------------------------------

ENV_FLAG_PREFIXES = ("TF_", "XLA_")
# Terraform's variables share the TF_ prefix (TF_CLI_CONFIG_FILE, TF_VAR_x, TF_TOKEN_host...): not TensorFlow's,
# and some hold credentials. A name that looks like a secret is never stored either.
NOT_TENSORFLOW = ("TF_CLI_", "TF_VAR_", "TF_TOKEN_", "TF_LOG", "TF_INPUT", "TF_WORKSPACE", "TF_IN_AUTOMATION",
                  "TF_REGISTRY_", "TF_PLUGIN_", "TF_DATA_DIR", "TF_IGNORE")
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "API_KEY")


def env_flags(environ: dict | None = None) -> dict[str, str]:
    """XLA_FLAGS, TF_XLA_FLAGS and every other TensorFlow TF_* / XLA_* variable set in the environment."""
    environ = os.environ if environ is None else environ
    return {key: str(value) for key, value in sorted(environ.items())
            if key.startswith(ENV_FLAG_PREFIXES) and not key.startswith(NOT_TENSORFLOW)
            and not any(word in key.upper() for word in SECRET_WORDS)}


def onednn_enabled(environ: dict | None = None, build_default: Callable[[], bool] | None = None) -> bool | None:
    """oneDNN's CPU kernels on: TF_ENABLE_ONEDNN_OPTS when set ("0"/"false" off), else what this build does
    by default (TensorFlow's own IsMklEnabled, which reads the same variable); None if neither can be read."""
    environ = os.environ if environ is None else environ
    value = environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is not None and value.strip():
        return value.strip().lower() not in ("0", "false", "no", "off")
    try:
        if build_default is None:
            from tensorflow.python.util import _pywrap_util_port

            build_default = _pywrap_util_port.IsMklEnabled
        return bool(build_default())
    except (ImportError, AttributeError):
        return None


def op_determinism() -> bool:
    """tf.config.experimental.enable_op_determinism() is in force (TF 2.21 exports no reader: the
    framework's own is_op_determinism_enabled, which its public setter writes)."""
    from tensorflow.python.framework import config

    return bool(config.is_op_determinism_enabled())


def resolved_jit_compile(functions) -> bool | None:
    """The compiled step's jit_compile as TensorFlow holds it: True if any of its tf.functions compiles with
    XLA, False if compiled without; None when nothing is compiled (eager)."""
    functions = list(functions)
    if not functions:
        return None
    return any(bool(getattr(fn, "_jit_compile", None)) for fn in functions)


def sha256_of(arrays) -> str | None:
    """SHA-256 of the arrays' bytes in order (float arrays as float32, C order); None without arrays."""
    import numpy

    arrays = list(arrays or ())
    if not arrays:
        return None
    digest = hashlib.sha256()
    for array in arrays:
        array = numpy.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(numpy.float32)
        digest.update(numpy.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def effective_settings(tf, *, functions=(), model=None, weights=None, first_batch=None,
                       environ: dict | None = None) -> dict:
    """What a record actually ran with (results.schema.json, ``$defs/effective``), read back from
    TensorFlow and Keras after the build: not what was asked for.

    ``functions``: the compiled step's tf.functions (``Trainer.compiled_functions()``, or the diagnostic's
    own); ``model``: a Keras model whose dtype policy is read (else the global policy); ``weights``: the
    initial weights in the interface's order; ``first_batch``: (images, labels) of the first step.
    """
    import keras

    policy = getattr(model, "dtype_policy", None) or keras.config.dtype_policy()
    return {
        "jit_compile": resolved_jit_compile(functions),
        "dtype_policy": str(getattr(policy, "name", policy)),
        "onednn": onednn_enabled(environ),
        "env_flags": env_flags(environ),
        "intra_op": int(tf.config.threading.get_intra_op_parallelism_threads()),
        "inter_op": int(tf.config.threading.get_inter_op_parallelism_threads()),
        "determinism": op_determinism(),
        "backend": keras.backend.backend(),
        "init_weights_sha256": sha256_of(weights),
        "first_batch_sha256": sha256_of(first_batch),
    }


def trainer_settings(tf, trainer, first_batch=None, weights=None) -> dict:
    """:func:`effective_settings` of a freshly built approach (its weights are still the initial ones)."""
    return effective_settings(tf, functions=trainer.compiled_functions(), model=getattr(trainer, "model", None),
                              weights=trainer.get_weights() if weights is None else weights,
                              first_batch=first_batch)
