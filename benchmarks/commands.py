"""``tfbench list`` and ``tfbench train``.

``tfbench train`` exits 0 when training completed, 2 on bad input (one line),
and :data:`EXIT_FAILED` (3) when the loss became NaN or infinite: the
``--json`` file is then still written, with ``"status": "failed"``, the
reason (epoch and step) and the epochs completed before.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tfbench.benchmarks.plan import DATASET_CHOICES
from tfbench.errors import ConfigError
from tfbench.implementations.interface import MODES, OptimizerSpec, TrainConfig
from tfbench.implementations.recipes import RECIPES, get_recipe
from tfbench.implementations.workloads import WORKLOADS, get_workload

# Exit status of `tfbench train` and `tfbench run` when training or a record failed (the output is written).
EXIT_FAILED = 3


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# --- list -------------------------------------------------------------------------------------------


def configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def support_matrix() -> list[dict]:
    """Every (approach, workload, mode) with None or the reason it is unsupported."""
    from tfbench.implementations import approaches

    return [{"approach": name, "workload": workload.name, "mode": mode,
             "supported": (reason := cls.unsupported(workload, mode)) is None, "reason": reason}
            for name, cls in approaches().items() for workload in WORKLOADS.values() for mode in MODES]


def main_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from tfbench.implementations import approaches

    matrix = support_matrix()
    if args.json:
        print(json.dumps({
            "approaches": {name: {"summary": cls.summary, "source": cls.source} for name, cls in approaches().items()},
            "workloads": {w.name: {"description": w.description, "benchmark": w.benchmark,
                                   "flops_per_sample": w.flops_per_sample,
                                   "trainable_params": w.num_trainable_params} for w in WORKLOADS.values()},
            "modes": list(MODES), "recipes": list(RECIPES), "combinations": matrix}, indent=1))
        return 0
    print("Approaches:")
    print(tabulate([(name, cls.summary, cls.source) for name, cls in approaches().items()],
                   headers=["approach", "what it is", "from"]))
    print("\nWorkloads:")
    print(tabulate([(w.name, w.description, f"{w.flops_per_sample / 1e6:.2f}", w.num_trainable_params,
                     "yes" if w.benchmark else "recipes") for w in WORKLOADS.values()],
                   headers=["workload", "network", "MFLOP/sample", "params", "benchmarked"]))
    print(f"\nSupport ({', '.join(MODES)}):")
    rows = []
    for name in approaches():
        for workload in WORKLOADS:
            cells = [c for c in matrix if c["approach"] == name and c["workload"] == workload]
            reasons = {c["reason"] for c in cells if not c["supported"]}
            status = "all modes" if not reasons else "; ".join(sorted(reasons))
            rows.append((name, workload, status))
    print(tabulate(rows, headers=["approach", "workload", "supported / why not"]))
    print(f"\nRecipes: {', '.join(RECIPES)}")
    return 0


# --- train ------------------------------------------------------------------------------------------


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", help=f"a documented recipe: {', '.join(RECIPES)}")
    parser.add_argument("--approach", help="e.g. custom_tape (see `tfbench list`)")
    parser.add_argument("--workload", default="mlp", help="mlp (default), cnn, or a recipe network")
    parser.add_argument("--mode", default="function", choices=MODES)
    parser.add_argument("--steps-per-call", type=positive_int, default=1, metavar="K")
    parser.add_argument("--dataset", default="mnist", choices=DATASET_CHOICES)
    parser.add_argument("--data-dir", help="folder with mnist/ (and fashion_mnist/) IDX files; "
                                           "default: $TFBENCH_DATA_DIR, then Keras's cache/download")
    parser.add_argument("--epochs", type=positive_int, default=None, help="default 1 (a recipe: its own)")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--optimizer", type=str, default=None,
                        help="NAME:LR, e.g. adam:1e-3 (default); dual_optimizer_tape: the book's Adam/Nadam pair")
    parser.add_argument("--upper-optimizer", type=str, default=None, help="dual_optimizer_tape's upper block")
    parser.add_argument("--no-verify", action="store_true",
                        help="use dataset files whose checksums do not match (their structure is still checked)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write the result as JSON (also when training diverges: status failed, exit 3)")
    parser.add_argument("--as-published", action="store_true",
                        help="with --recipe: run the tutorial's own loop as published, bugs included")


def _print_epoch(record: dict) -> None:
    parts = [f"epoch {record['epoch']:>3}", f"loss {record['loss']:.4f}", f"accuracy {record['accuracy']:.4f}"]
    for name in ("val", "test"):
        if f"{name}_accuracy" in record:
            parts += [f"{name}_loss {record[f'{name}_loss']:.4f}", f"{name}_accuracy {record[f'{name}_accuracy']:.4f}"]
    parts.append(f"({record['train_time_s']:.1f} s)")
    print("  ".join(parts), flush=True)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    from tfbench.implementations import get_approach

    approach = get_approach(args.approach)
    lower = OptimizerSpec.parse(args.optimizer) if args.optimizer else None
    upper = OptimizerSpec.parse(args.upper_optimizer) if args.upper_optimizer else None
    defaults = getattr(approach, "default_optimizers", None)
    if lower is None and defaults:  # dual_optimizer_tape: the book's pair unless told otherwise
        lower, upper = defaults[0], upper or defaults[1]
    config = TrainConfig(mode=args.mode, steps_per_call=args.steps_per_call, optimizer=lower or OptimizerSpec(),
                         upper_optimizer=upper, seed=args.seed)
    reason = approach.unsupported(get_workload(args.workload), args.mode)
    if reason:
        raise ConfigError(f"{args.approach} cannot run {args.workload} in {args.mode} mode: {reason}")
    return config


def main_train(args: argparse.Namespace) -> int:
    from tfbench.errors import TrainingDiverged, UsageError

    if args.recipe and args.approach:
        raise UsageError("give either --recipe or --approach, not both")
    if not args.recipe and not args.approach:
        raise UsageError("give --approach A (see `tfbench list`) or --recipe NAME")
    if args.as_published:
        if not args.recipe:
            raise UsageError("--as-published runs a tutorial's own loop: give it with --recipe NAME")
        from tfbench.implementations.as_published import get_loop

        get_loop(args.recipe)  # a recipe without a published loop is a usage error, before anything loads
    if args.json:
        from tfbench.benchmarks.outputs import check_file

        check_file(args.json, "the --json file")  # before training, not after it
    what, run = (_as_published if args.as_published else _recipe if args.recipe else _approach)(
        args, verify=not args.no_verify)
    try:
        summary = {**what, "status": "ok", **run()}
    except TrainingDiverged as error:
        _write_json(args, {**what, "status": "failed", "reason": str(error), "history": error.history})
        print(f"tfbench: training failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    _write_json(args, summary)  # first: the result is kept even if printing the figures fails
    if "recipe" in summary:
        print(_recipe_verdict(get_recipe(summary["recipe"]), summary["epochs"], summary["final_accuracy"],
                              summary["reproduced_accuracy"]))
    for name in ("train_accuracy", "val_accuracy", "test_accuracy"):
        if name in summary and name != summary.get("documented_metric"):
            print(f"{name.replace('_', ' ')}: {summary[name]:.4f}")
    return 0


def _recipe_verdict(recipe, epochs_run: float, final: float, reproduced: float | None) -> str:
    """One line: the reproduced figure beside the documented one, or why a capped run is no reproduction."""
    documented = (f"{recipe.documented_accuracy:.4f} after epoch {recipe.documented_epoch}"
                  if recipe.documented_accuracy is not None else "none reported")
    if reproduced is None:
        return (f"{recipe.documented_metric}: {final:.4f} after {epochs_run:g} of {recipe.epochs} epochs (capped: "
                f"not a reproduction); documented {documented}")
    return f"{recipe.documented_metric}: reproduced {reproduced:.4f}, documented {documented}"


def _write_json(args: argparse.Namespace, summary: dict) -> None:
    if args.json:
        from tfbench.benchmarks.results import write_json_atomic

        write_json_atomic(args.json, summary, what="--json file")
        print(f"wrote {args.json}")


def _recipe(args: argparse.Namespace, verify: bool) -> tuple[dict, Callable[[], dict]]:
    """What the recipe run is, and the call that trains it."""
    from tfbench.benchmarks.training import run_recipe

    recipe = get_recipe(args.recipe)
    epochs = args.epochs or recipe.epochs
    print(f"{recipe.title}: {recipe.approach} on {recipe.workload}, {recipe.optimizer}, batch "
          f"{recipe.batch_size}, {epochs} epochs, {recipe.dataset}", flush=True)
    what = {"recipe": recipe.name, "approach": recipe.approach, "workload": recipe.workload, "mode": recipe.mode,
            "dataset": recipe.dataset, "epochs": epochs, "batch_size": recipe.batch_size}
    return what, lambda: run_recipe(recipe, data_dir=args.data_dir, epochs=args.epochs, seed=args.seed,
                                    on_epoch=_print_epoch, verify=verify)


def _as_published(args: argparse.Namespace, verify: bool) -> tuple[dict, Callable[[], dict]]:
    """The tutorial's own loop as published (:mod:`tfbench.implementations.as_published`), and the call that
    trains it."""
    from tfbench.implementations.as_published import documented_figure, get_loop, raw_data, run

    recipe, loop_class = get_recipe(args.recipe), get_loop(args.recipe)
    data = raw_data(recipe.dataset, args.data_dir, verify=verify)
    loop = loop_class(data, seed=args.seed)
    epochs = args.epochs or loop_class.epochs
    print(f"{recipe.title}, as published ({loop_class.title}): {epochs} of {loop_class.epochs} epochs of "
          f"{loop.steps_per_epoch} steps, eager, {data.source}", flush=True)
    what = {"recipe": recipe.name, "as_published": True, "dataset": recipe.dataset, "epochs": epochs,
            "documented_epochs": loop_class.epochs, "batch_size": loop.batch_size,
            "documented_metric": recipe.documented_metric, "documented_accuracy": recipe.documented_accuracy}

    def train_it() -> dict:
        result = run(loop, epochs=epochs)
        print()  # the loops end their progress lines with "\r", not a newline
        full_length = epochs >= loop_class.epochs
        return {**result, "full_length": full_length, "final_accuracy": documented_figure(recipe, result, epochs),
                "reproduced_accuracy": documented_figure(recipe, result) if full_length else None}

    return what, train_it


def _approach(args: argparse.Namespace, verify: bool) -> tuple[dict, Callable[[], dict]]:
    """What the training run is (its data loaded and checked), and the call that trains it."""
    from tfbench.benchmarks.training import train
    from tfbench.implementations.datasets import load

    config = _train_config(args)
    data = load(args.dataset, data_dir=args.data_dir, verify=verify)
    epochs = args.epochs or 1
    print(f"{args.approach} on {args.workload}, {args.mode} mode, K={args.steps_per_call}, {config.optimizer}"
          f"{f' / {config.upper_optimizer}' if config.upper_optimizer else ''}, batch {args.batch_size}, "
          f"{epochs} epoch(s), {data.source}", flush=True)
    what = {"approach": args.approach, "workload": args.workload, "mode": args.mode,
            "steps_per_call": args.steps_per_call, "dataset": args.dataset, "epochs": epochs,
            "batch_size": args.batch_size, "optimizer": str(config.optimizer)}
    return what, lambda: train(args.approach, args.workload, config, data, epochs=epochs,
                               batch_size=args.batch_size, seed=args.seed, on_epoch=_print_epoch)
