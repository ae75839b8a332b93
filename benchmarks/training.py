"""Training to accuracy: shared by ``tfbench train`` and the harness's accuracy and recipe stages."""

from __future__ import annotations

from collections.abc import Callable

from tfbench.implementations import build
from tfbench.implementations.datasets import Data, Split, load
from tfbench.implementations.interface import TrainConfig
from tfbench.implementations.recipes import Recipe, initial_weights, sklearn_stratified_split
from tfbench.implementations.workloads import get_workload


def time_to_accuracy(history: list[dict], target: float | None) -> float | None:
    """Training seconds (evaluation excluded, as MLPerf and AlgoPerf count) until the
    test accuracy first reaches ``target``; None if it never does."""
    if target is None:
        return None
    elapsed = 0.0
    for epoch in history:
        elapsed += epoch["train_time_s"]
        if epoch.get("test_accuracy", 0.0) >= target:
            return elapsed
    return None


def train(approach: str, workload: str, config: TrainConfig, data: Data, *, epochs: int, batch_size: int,
          seed: int = 0, sampling: str = "shuffle", on_epoch: Callable[[dict], None] | None = None,
          weights=None) -> dict:
    """Train from the workload's common initial weights (or ``weights``); return the history and the figures.

    A loss that becomes NaN or infinite raises :class:`~tfbench.errors.TrainingDiverged` naming the epoch
    and step (``Trainer.fit``): the harness records it as a failed record, ``tfbench train`` exits 3.
    """
    trainer = build(approach, workload, config, weights)
    eval_sets = {"val": (data.val.x, data.val.y)} if data.val is not None else {}
    eval_sets["test"] = (data.test.x, data.test.y)
    history = trainer.fit(data.train.x, data.train.y, epochs=epochs, batch_size=batch_size, eval_sets=eval_sets,
                          seed=seed, sampling=sampling, on_epoch=on_epoch)
    target = get_workload(workload).target_accuracy.get(data.name)
    return {"test_accuracy": history[-1]["test_accuracy"], "target_accuracy": target,
            "time_to_accuracy_s": time_to_accuracy(history, target),
            "train_time_s": sum(e["train_time_s"] for e in history), "epochs": epochs, "history": history,
            "num_trainable_params": trainer.num_trainable_params, "data_source": data.source}


def recipe_data(recipe: Recipe, data_dir=None, verify: bool = True) -> Data:
    """The recipe's dataset, split as its tutorial split it."""
    if recipe.split != "sklearn":
        return load(recipe.dataset, data_dir=data_dir, validation_fraction=recipe.validation_fraction,
                    split_seed=recipe.split_seed, train_limit=recipe.train_limit, verify=verify)
    data = load(recipe.dataset, data_dir=data_dir, verify=verify)
    train_index, val_index = sklearn_stratified_split(data.train.y, recipe.validation_fraction, recipe.split_seed)
    train_index = train_index[:recipe.train_limit]
    return Data(name=data.name, train=Split(data.train.x[train_index], data.train.y[train_index]),
                val=Split(data.train.x[val_index], data.train.y[val_index]), test=data.test,
                source=f"{data.source}; scikit-learn's stratified train_test_split (random_state="
                       f"{recipe.split_seed}), reproduced")


def accuracy_at(recipe: Recipe, history: list[dict], epoch: int) -> float:
    """The accuracy the tutorial reports, after ``epoch`` (train = that epoch's running mean, as printed)."""
    key = {"train_accuracy": "accuracy"}.get(recipe.documented_metric, recipe.documented_metric)
    return history[epoch - 1][key]


def run_recipe(recipe: Recipe, *, data_dir=None, epochs: int | None = None, seed: int = 0,
               on_epoch: Callable[[dict], None] | None = None, verify: bool = True,
               train_fraction: float = 1.0) -> dict:
    """Run a documented recipe (``epochs`` overrides its epoch count, for quick runs).

    Only a run to the recipe's full length is a reproduction: ``reproduced_accuracy`` (the figure at the
    epoch the tutorial reports it) is None for a capped run, whose ``final_accuracy`` is the same metric
    after its last epoch; ``train_fraction`` < 1 trains on that share of the training set. A loss that becomes
    NaN or infinite raises :class:`~tfbench.errors.TrainingDiverged` (see ``train``).
    """
    data = recipe_data(recipe, data_dir, verify=verify)
    if train_fraction < 1:  # a budgeted run's share of the training set (benchmarks/budget.py)
        keep = max(1, int(len(data.train.y) * train_fraction))
        data = Data(name=data.name, train=Split(data.train.x[:keep], data.train.y[:keep]), val=data.val,
                    test=data.test, source=f"{data.source}; the first {keep} training examples (the run's budget)")
    config = TrainConfig(mode=recipe.mode, optimizer=recipe.optimizer, upper_optimizer=recipe.upper_optimizer,
                         seed=seed)
    epochs = epochs or recipe.epochs
    weights = initial_weights(recipe, get_workload(recipe.workload), seed)
    result = train(recipe.approach, recipe.workload, config, data, epochs=epochs, batch_size=recipe.batch_size,
                   seed=seed, sampling=recipe.sampling, on_epoch=on_epoch, weights=weights)
    full_length = epochs >= recipe.epochs and train_fraction >= 1
    if train_fraction < 1:
        result["train_fraction"] = train_fraction
    result.update(recipe=recipe.name, title=recipe.title, source=recipe.source, notes=recipe.notes,
                  documented_metric=recipe.documented_metric, documented_accuracy=recipe.documented_accuracy,
                  documented_epochs=recipe.epochs, documented_epoch=recipe.documented_epoch,
                  documented_curve=list(recipe.documented_curve), full_length=full_length,
                  final_accuracy=accuracy_at(recipe, result["history"], epochs),
                  reproduced_accuracy=(accuracy_at(recipe, result["history"], recipe.documented_epoch)
                                       if full_length else None))
    return result
