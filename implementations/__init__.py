"""Training approaches, one module each, behind one interface (:mod:`implementations.interface`).

The registry finds approaches by listing this package: every module that
defines ``APPROACH`` (a :class:`~implementations.interface.Trainer` subclass)
is one. Support modules (workloads, datasets, recipes) define none.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from functools import cache
from pathlib import Path

from tfbench.errors import ConfigError, Unsupported
from tfbench.implementations.interface import TrainConfig, Trainer
from tfbench.implementations.workloads import Workload, get_workload


@cache
def approaches() -> dict[str, type[Trainer]]:
    """Every registered approach by name, in a stable order."""
    found: dict[str, type[Trainer]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        approach = getattr(module, "APPROACH", None)
        if approach is not None:
            found[approach.name] = approach
    return found


@cache
def approach_names() -> tuple[str, ...]:
    """The registered approaches' names, found without importing them (so without TensorFlow): the modules
    here that assign ``APPROACH``, each named after its approach (a test holds the two lists equal)."""
    names = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        path = Path(__path__[0]) / f"{module_info.name}.py"
        if module_info.ispkg or not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "APPROACH" for t in node.targets)
               for node in tree.body):
            names.append(module_info.name)
    return tuple(names)


def get_approach(name: str) -> type[Trainer]:
    registry = approaches()
    if name not in registry:
        raise ConfigError(f"unknown approach {name!r}; choose one of: {', '.join(registry)}")
    return registry[name]


def build(approach: str, workload: str | Workload, config: TrainConfig | None = None,
          weights=None) -> Trainer:
    """Build ``approach`` for ``workload``; raises :class:`Unsupported` with a reason if it cannot."""
    workload = get_workload(workload) if isinstance(workload, str) else workload
    return get_approach(approach)(workload, config or TrainConfig(), weights)


__all__ = ["approach_names", "approaches", "build", "get_approach", "ConfigError", "Unsupported"]
