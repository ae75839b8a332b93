"""tf-training-bench: a comparative benchmark of the ways to train neural networks in TensorFlow.

One import namespace over the folders users expect at the top of the repository:
``tfbench.implementations`` (the training approaches), ``tfbench.benchmarks`` (the harness) and
``tfbench.reports`` (Markdown and charts from stored results).
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
