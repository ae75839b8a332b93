"""What the results were measured on: versions, hardware, settings. Stored in every results file."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

from tfbench.benchmarks.devices import cpu_model, metal_plugin_version

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
        "gpus": [d.description for d in devices if d.kind in ("gpu", "metal")],
        "tensorflow_metal": metal_plugin_version(),
        "tf_build_info": build,
        "threads": threads,
        "git_commit": git_commit(),
        "machine_id": machine_id(),
        "argv": sys.argv[1:],
    }
