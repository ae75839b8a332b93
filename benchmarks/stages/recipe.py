"""Recipes: the tutorials' documented runs (:mod:`tfbench.implementations.recipes`), each beside the figure
its tutorial reports. Runs on the first chosen device."""

from __future__ import annotations

from tfbench.benchmarks.stages.base import Context, Job, skipped

KIND = "recipe"
# The `tfbench run` options this stage honours beyond the common ones (base.py).
# Every documented recipe as documented: its own approach, network, dataset, batch size and optimizer.
FLAGS = ("data_dir", "no_verify", "require_accuracy", "budget")


def jobs(context: Context) -> list[Job]:
    from tfbench.implementations.recipes import RECIPES

    device = context.devices[0]
    return [Job(KIND, {"recipe": recipe, "device": device},
                [context.stub(KIND, approach=recipe.approach, workload=recipe.workload, device=device.name,
                              batch_size=recipe.batch_size, dataset=recipe.dataset, variant=recipe.name)])
            for recipe in RECIPES.values()]


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks.training import run_recipe
    from tfbench.errors import DatasetError

    recipe = job.params["recipe"]
    if recipe.dataset in context.unavailable:
        return skipped(job.stubs, context.unavailable[recipe.dataset])
    try:
        with context.tf.device(job.params["device"].tf_device):
            # A budgeted run may train fewer epochs, or a share of the training set (benchmarks/budget.py).
            epochs, fraction = context.training_size(job, min(context.plan.recipe_epochs or recipe.epochs,
                                                              recipe.epochs))
            result = run_recipe(recipe, data_dir=context.plan.data_dir, epochs=epochs, seed=context.plan.seed,
                                verify=context.plan.verify, train_fraction=fraction)
    except DatasetError as error:
        context.unavailable[recipe.dataset] = str(error)
        return skipped(job.stubs, str(error))
    return [{**job.stubs[0], "metrics": result}]
