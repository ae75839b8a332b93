"""tf-training-bench: a comparative benchmark of the ways to train neural networks in TensorFlow.

One import namespace over the folders users expect at the top of the repository:
``tfbench.implementations`` (the training approaches), ``tfbench.benchmarks`` (the harness) and
``tfbench.reports`` (Markdown and charts from stored results). The public API::

    results = tfbench.run(profile="quick", workloads=["mlp"])   # -> Results
    results.to_dataframe(); results.report("report/"); results.plot_step_time("step.png")
    tfbench.load("reports/results/"); tfbench.compare(baseline, candidate)

``import tfbench`` does not import TensorFlow; :func:`run` does when it starts measuring.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.2.0"

# An installed wheel maps the three folders into this package (pyproject.toml, package-dir). In a source
# checkout they stand beside this folder instead, so the package also looks there. Nothing else is added:
# the checkout's own layout is what the wheel installs.
_here = Path(__file__).resolve().parent
if not (_here / "implementations").is_dir() and (_here.parent / "implementations" / "__init__.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 (a package's __path__)

from tfbench.api import Results, compare, load, run  # noqa: E402 (after the path above is set)
from tfbench.errors import ConfigError, TfbenchError, UsageError  # noqa: E402

__all__ = ["ConfigError", "Results", "TfbenchError", "UsageError", "compare", "load", "run", "__version__"]
