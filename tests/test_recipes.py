"""The recipes run what the tutorials ran, and each tutorial's loop runs as published (tiny data, no timings).

Real data never enters these tests: the loops and the harness stage run on a few hundred synthetic images
(``raw_data("synthetic")``), the recipes on a small synthetic ``load``. Long reproductions belong in
``tfbench run --profile full --stages recipe as_published``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbench.benchmarks import training
from tfbench.benchmarks.cli import main
from tfbench.errors import ConfigError
from tfbench.implementations import as_published
from tfbench.implementations.datasets import load
from tfbench.implementations.interface import epoch_batches
from tfbench.implementations.recipes import RECIPES, Recipe, get_recipe, initial_weights, sklearn_stratified_split
from tfbench.implementations.workloads import get_workload

TINY = (320, 64)  # synthetic train / test images
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results_cpu.json"


def fixture_document() -> dict:
    return json.loads(FIXTURE.read_text())


def write_results(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def tiny_raw(monkeypatch):
    """Every published loop (and the harness stage) reads a few hundred synthetic uint8 images."""
    original = as_published.raw_data

    def tiny(dataset, data_dir=None, **_):
        return original("synthetic", synthetic_sizes=TINY)

    monkeypatch.setattr(as_published, "raw_data", tiny)
    return tiny("synthetic")


@pytest.fixture
def tiny_load(monkeypatch):
    """Recipes load a small synthetic dataset instead of their real one."""

    def tiny(name, **kwargs):
        return load("synthetic", synthetic_sizes=TINY, **{k: v for k, v in kwargs.items() if k != "data_dir"})

    monkeypatch.setattr(training, "load", tiny)


# --- the recipes -----------------------------------------------------------------------------------------


def test_the_split_is_scikit_learns_train_test_split_exactly():
    model_selection = pytest.importorskip("sklearn.model_selection")  # the `test` extra installs it
    rng = np.random.default_rng(0)
    cases = [(np.repeat(np.arange(10), 600), 0.2, 42)]  # Fashion-MNIST's shape: no remainders
    cases += [(rng.integers(0, classes, size=n), fraction, seed)  # uneven classes: ties broken at random
              for classes, n, fraction, seed in [(3, 101, 0.2, 42), (7, 333, 0.3, 0), (5, 250, 0.15, 7)]]
    for y, fraction, seed in cases:
        expected_train, expected_test = model_selection.train_test_split(
            np.arange(len(y)), stratify=y, test_size=fraction, random_state=seed)
        train, test = sklearn_stratified_split(y, fraction, seed)
        assert np.array_equal(train, expected_train) and np.array_equal(test, expected_test)


def test_the_split_without_scikit_learn_is_stratified_disjoint_and_repeatable():
    y = np.repeat(np.arange(10), 60)
    train, test = sklearn_stratified_split(y, 0.2, 42)
    assert len(test) == 120 and len(train) == 480 and not set(train) & set(test)
    assert np.array_equal(np.bincount(y[test]), np.full(10, 12))
    assert np.array_equal(sklearn_stratified_split(y, 0.2, 42)[0], train)
    assert not np.array_equal(sklearn_stratified_split(y, 0.2, 43)[0], train)


def test_doit_raw_cnn_recipe_trains_and_validates_on_the_books_split(tiny_load):
    data = training.recipe_data(get_recipe("doit_raw_cnn"))
    full = load("synthetic", synthetic_sizes=TINY)
    train, val = sklearn_stratified_split(full.train.y, 0.2, 42)
    assert np.array_equal(data.train.y, full.train.y[train]) and np.array_equal(data.val.x, full.train.x[val])
    assert "scikit-learn" in data.source


def test_homl_recipes_run_what_the_notebook_ran():
    custom, dual = get_recipe("homl_custom_loop"), get_recipe("homl_dual_optimizer")
    # In [202] reloads all 60,000 images before the loop of In [209]: no split, 1,875 batches of 32.
    assert custom.validation_fraction == 0 and custom.sampling == "random" and custom.train_limit is None
    assert len(epoch_batches(60_000, 32, np.random.default_rng(0), custom.sampling)) == 1875
    assert custom.documented_curve[0] == 0.8217 and custom.documented_accuracy == 0.8794
    assert custom.documented_epoch == 7 and custom.epochs == 10
    # 5,000 images, 156 batches an epoch (what its output shows), the published curve.
    assert dual.train_limit == 5000 and dual.sampling == "random"
    assert len(epoch_batches(5000, 32, np.random.default_rng(0), dual.sampling)) == 156
    assert dual.documented_curve == (0.6480, 0.7965, 0.8225, 0.8435, 0.8488) and dual.documented_epoch == 5


def test_recipes_start_from_their_tutorials_initialisers():
    dlwp, mlp, cnn = get_recipe("dlwp_naive"), get_recipe("raw_mlp_metal"), get_recipe("doit_raw_cnn")
    weights = initial_weights(dlwp, get_workload(dlwp.workload), seed=0)
    kernels, biases = weights[0::2], weights[1::2]
    assert all(k.min() >= 0 and k.max() < 0.1 and k.dtype == np.float32 for k in kernels)  # uniform[0, 0.1)
    assert all(not b.any() for b in biases)
    normal = initial_weights(mlp, get_workload(mlp.workload), seed=0)[0]
    assert abs(float(normal.std()) - 0.1) < 0.005 and abs(float(normal.mean())) < 0.005
    assert initial_weights(cnn, get_workload(cnn.workload)) is None  # the workload's common Glorot draw


def test_run_recipe_builds_from_the_recipes_weights(tiny_load, monkeypatch):
    seen = {}

    def capture(approach, workload, config, weights=None):
        seen["weights"] = weights
        raise RuntimeError("stop here")

    monkeypatch.setattr(training, "build", capture)
    with pytest.raises(RuntimeError, match="stop here"):
        training.run_recipe(get_recipe("dlwp_naive"))
    assert seen["weights"][0].min() >= 0 and seen["weights"][0].max() < 0.1


def test_a_capped_recipe_run_is_not_a_reproduction(tiny_load):
    recipe = dataclasses.replace(get_recipe("dlwp_naive"), epochs=2, mode="eager")
    capped = training.run_recipe(recipe, epochs=1)
    assert capped["reproduced_accuracy"] is None and not capped["full_length"]
    assert capped["final_accuracy"] == capped["history"][-1]["test_accuracy"] and capped["epochs"] == 1
    full = training.run_recipe(recipe)
    assert full["full_length"] and full["reproduced_accuracy"] == full["history"][1]["test_accuracy"]


def test_a_train_accuracy_is_reproduced_at_the_epoch_the_tutorial_shows(tiny_load):
    recipe = dataclasses.replace(get_recipe("homl_custom_loop"), epochs=3, documented_curve=(0.5, 0.6),
                                 documented_accuracy=0.6, mode="eager", workload="mlp")
    result = training.run_recipe(recipe)
    assert result["reproduced_accuracy"] == result["history"][1]["accuracy"]  # epoch 2 of 3
    assert result["documented_epoch"] == 2 and result["documented_curve"] == [0.5, 0.6]


@pytest.mark.parametrize("change, message", [
    ({"split": "random"}, "unknown split"),
    ({"init": "he_normal"}, "unknown init"),
    ({"documented_curve": (0.5, 0.7)}, "documented curve"),
])
def test_bad_recipes_are_refused(change, message):
    base = dataclasses.asdict(get_recipe("dlwp_naive"))
    with pytest.raises(ConfigError, match=message):
        Recipe(**{**base, **change})


def test_the_dual_optimizer_notes_state_the_cause_shown():
    notes = get_recipe("homl_dual_optimizer").notes
    assert "divided by 255 twice" in notes and "not BatchNormalization's doing" in notes and "156" in notes


# --- the loops as published --------------------------------------------------------------------------------


def test_every_recipe_has_a_published_loop_of_its_tutorial():
    assert set(as_published.LOOPS) == set(RECIPES)
    for name in RECIPES:
        loop = as_published.get_loop(name)
        assert loop.recipe == name and loop.epochs >= 1 and loop.title and sys.modules[loop.__module__].__doc__


@pytest.mark.parametrize("name", list(as_published.LOOPS))
def test_each_published_loop_runs_a_fixed_number_of_steps_and_prints_to_its_sink(name, tiny_raw):
    sink = io.StringIO()
    loop = as_published.get_loop(name)(tiny_raw, seed=0, out=sink)
    steps = min(loop.steps_per_epoch + 1, 4) if loop.steps_per_epoch > 1 else 2
    result = as_published.run(loop, steps=steps)
    assert result["steps"] == steps and sink.getvalue()
    if loop.steps_per_epoch <= steps:  # an epoch ended: its figures are in the history
        assert result["history"] and result["history"][0]["epoch"] == 1
        assert 0 <= result[loop.metric] <= 1


def test_ann_gradienttape_keeps_its_bugs(tiny_raw):
    loop = as_published.get_loop("ann_gradienttape")(tiny_raw, seed=0, out=io.StringIO())
    assert float(loop.optimizer.learning_rate) == pytest.approx(1e-8)
    loop.step()  # the model is built inside this step: it read no trainable variables, so nothing moved
    before = [w.numpy().copy() for w in loop.classifier.trainable_variables]
    loop.step()
    after = [w.numpy() for w in loop.classifier.trainable_variables]
    assert max(float(np.abs(a - b).max()) for a, b in zip(after, before)) < 1e-6  # Adam(1e-8): barely
    # The swapped loss: the one-hot labels are the prediction, clipped, so the loss is about
    # 16.1 x (1 - probability of the true class), not a cross-entropy of the predictions.
    preds = loop.classifier(loop.x_train[:32].reshape(-1, 784)).numpy()
    one_hot = np.eye(10)[loop.y_train[:32]]
    expected = np.mean(-np.sum(preds * np.log(np.clip(one_hot, 1e-7, 1 - 1e-7)), axis=1))
    assert float(loop.cross_entropy(preds, one_hot)) == pytest.approx(expected, rel=1e-4)


def test_raw_mlp_takes_full_batch_steps_with_a_new_optimizer_each(tiny_raw, monkeypatch):
    from tfbench.implementations.as_published import raw_mlp_metal

    made = []
    original = raw_mlp_metal.keras.optimizers.SGD
    monkeypatch.setattr(raw_mlp_metal.keras.optimizers, "SGD", lambda **kw: made.append(kw) or original(**kw))
    loop = raw_mlp_metal.Loop(tiny_raw, seed=0, out=io.StringIO())
    assert loop.batch_size == TINY[0] and loop.steps_per_epoch == 1
    assert int(loop.X.numpy().max()) > 1  # pixels never scaled
    as_published.run(loop)
    assert len(made) == loop.epochs == 5 and made[0] == {"learning_rate": 0.01}


def test_doit_computes_get_loss_after_every_update(tiny_raw, monkeypatch):
    from tfbench.implementations.as_published import doit_raw_cnn

    loop = doit_raw_cnn.Loop(tiny_raw, seed=0, out=io.StringIO())
    calls = []
    monkeypatch.setattr(loop.cn, "get_loss", lambda x, y: calls.append(len(x)) or 1.0)
    as_published.run(loop, epochs=1)
    train, val = sklearn_stratified_split(tiny_raw.y_train, 0.2, 42)
    assert loop.steps_per_epoch == len(train) // 128
    assert calls == [128] * loop.steps_per_epoch + [len(val)]  # each batch, then the validation set


def test_homl_loops_sample_as_the_notebook_ran(tiny_raw):
    from tfbench.implementations.as_published import homl_exercise10

    custom = homl_exercise10.CustomLoop(tiny_raw, seed=0, out=io.StringIO())
    assert len(custom.x_train) == TINY[0] and custom.steps_per_epoch == TINY[0] // 32
    dual = homl_exercise10.DualOptimizerLoop(tiny_raw, seed=0, out=io.StringIO())
    assert dual.steps_per_epoch == min(TINY[0], 5000) // 32  # n_steps of the 5,000 kept
    assert float(dual.x_val.max()) <= 1 / 255 + 1e-12 < float(dual.x_train.max())  # divided by 255 twice
    as_published.run(dual, epochs=1)
    assert "val_accuracy" in dual.history[0] and "val_loss = " in dual.out.getvalue()


def test_dlwp_batches_in_order_from_its_own_initialiser(tiny_raw):
    loop = as_published.get_loop("dlwp_naive")(tiny_raw, seed=0, out=io.StringIO())
    first = loop.model.weights[0].numpy()
    assert first.min() >= 0 and first.max() < 0.1
    assert loop.steps_per_epoch == -(-TINY[0] // 128)  # ceil: the last batch is smaller
    as_published.run(loop, epochs=1)
    assert loop.batch_generator.index >= TINY[0]


def test_documented_figure_reads_the_epoch_the_tutorial_shows():
    recipe = get_recipe("homl_custom_loop")
    history = [{"epoch": e, "accuracy": e / 10} for e in range(1, 11)]
    assert as_published.documented_figure(recipe, {"history": history}) == 0.7
    assert as_published.documented_figure(recipe, {"history": history[:2]}, at_epoch=2) == 0.2
    assert as_published.documented_figure(get_recipe("doit_raw_cnn"), {"val_accuracy": 0.5}) == 0.5


# --- the command line -------------------------------------------------------------------------------------


def test_as_published_without_a_recipe_is_a_usage_error(capsys):
    for argv in (["train", "--approach", "custom_tape", "--as-published"],
                 ["train", "--recipe", "nope", "--as-published"]):
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("tfbench: error: ")


def test_train_as_published_runs_the_tutorials_loop(tiny_raw, capsys, tmp_path):
    out = tmp_path / "dlwp.json"
    assert main(["train", "--recipe", "dlwp_naive", "--as-published", "--epochs", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "as published" in printed and "batch 0 loss:" in printed
    assert "after 1 of 10 epochs (capped: not a reproduction)" in printed
    summary = json.loads(out.read_text())
    assert summary["as_published"] and summary["reproduced_accuracy"] is None and summary["epochs"] == 1


# --- the harness stage and its report -------------------------------------------------------------------


def test_as_published_stage_times_and_trains_each_loop(tiny_raw, monkeypatch, tmp_path):
    import tfbench
    from tfbench.reports import load_results, to_markdown, write_report

    monkeypatch.setattr(as_published, "LOOPS", {k: as_published.LOOPS[k] for k in ("dlwp_naive", "raw_mlp_metal")})
    results = tfbench.run(profile="quick", stages=["as_published"], modes=["eager", "function"],
                          steps_per_call=[1, 2], samples=2, out=tmp_path)
    records = {r["variant"]: r for r in results.records}
    assert set(records) == {"dlwp_naive", "raw_mlp_metal"} and all(r["status"] == "ok" for r in records.values())
    dlwp = records["dlwp_naive"]
    m = dlwp["metrics"]
    assert dlwp["kind"] == "as_published" and dlwp["batch_size"] == 128 and m["published_batch_size"] == 128
    assert set(m["fixed_step_time_s"]) == {"published", "eager/k1", "function/k1", "function/k2"}
    assert m["best_mode"] == "function" and m["best_steps_per_call"] in (1, 2)
    assert m["published_over_best"] == pytest.approx(
        m["published_step_time_s"]["median"] / m["best_step_time_s"]["median"])
    assert m["published_epochs"] == 1 and m["documented_epochs"] == 10 and not m["published_full_length"]
    assert records["raw_mlp_metal"]["metrics"]["published_batch_size"] == TINY[0]  # the full batch
    markdown = to_markdown(load_results(results.paths))
    table = markdown.split("## Tutorials as published")[1].split("## ")[0]
    assert "| dlwp_naive " in table and "(capped, 1/10 epochs)" in table and "2 of 2 as-published runs" in table
    report = write_report(results.paths, tmp_path / "report")
    assert (report.parent / "figures" / "as_published.png").stat().st_size > 0


def test_recipe_table_says_when_a_run_was_capped(tmp_path):
    from tfbench.reports import load_results, to_markdown

    doc = fixture_document()
    for r in doc["records"]:
        if r["kind"] == "recipe" and r["variant"] == "dlwp_naive_sequential":
            r["metrics"].update(documented_epochs=10, full_length=False, final_accuracy=0.8266,
                                reproduced_accuracy=None)
        elif r["kind"] == "recipe":
            r["metrics"].update(documented_epochs=3, full_length=True)
    markdown = to_markdown(load_results(write_results(tmp_path / "r.json", doc)))
    recipes = markdown.split("## Documented recipes")[1].split("## ")[0]
    row = next(line for line in recipes.splitlines() if line.startswith("| dlwp_naive_sequential"))
    assert "3/10" in row and "capped: 0.8266, not a reproduction" in row and "-0.0" not in row
    homl = next(line for line in recipes.splitlines() if line.startswith("| homl_ch12_custom_loop"))
    assert "3/3" in homl and "+0.0058" in homl
    summary = markdown.split("## Summary")[1].split("## ")[0]
    assert "1 capped (not reproductions)" in summary and "dlwp_naive_sequential" not in summary


def test_recipe_curves_chart_draws_the_published_figures(tmp_path):
    from tfbench.reports import load_results
    from tfbench.reports.as_published import plot_recipe_curves

    doc = fixture_document()
    homl = next(r for r in doc["records"] if r["kind"] == "recipe" and r["variant"] == "homl_ch12_custom_loop")
    homl["metrics"].update(documented_curve=[0.8217, 0.8571, 0.8635], documented_metric="train_accuracy")
    drawn = plot_recipe_curves(load_results(write_results(tmp_path / "r.json", doc)), tmp_path / "curves.png")
    assert list(drawn["variant"]) == ["homl_ch12_custom_loop"] and (tmp_path / "curves.png").stat().st_size > 0


def test_as_published_table_compares_only_full_length_runs_with_the_documented_figure(tmp_path):
    from tfbench.reports import load_results, to_markdown

    doc = fixture_document()
    machine_recipe = next(r for r in doc["records"] if r["variant"] == "dlwp_naive_sequential")
    machine_recipe["metrics"].update(documented_epochs=3, full_length=True)

    def summary(median, iqr):
        return {"median": median, "p10": median, "p90": median, "iqr": iqr, "mean": median, "stdev": 0.0, "n": 10,
                "samples": [median] * 10}

    metrics = {"published_batch_size": 128, "published_step_time_s": summary(0.040, 0.020), "noisy": True,
               "fixed_eager_step_time_s": summary(0.010, 0.0001), "best_step_time_s": summary(0.002, 0.0001),
               "best_mode": "xla", "best_steps_per_call": 16, "published_over_fixed_eager": 4.0,
               "published_over_fixed_eager_ci": [3.5, 4.5], "published_over_best": 20.0,
               "published_over_best_ci": [18.0, 22.0], "published_accuracy": 0.8123, "published_full_length": True,
               "published_epochs": 3, "documented_epochs": 3, "documented_metric": "test_accuracy",
               "documented_accuracy": 0.81, "documented_epoch": 3, "published_history": [], "title": "t"}
    doc["records"].append({**{k: machine_recipe[k] for k in ("approach", "workload", "device", "dataset")},
                           "id": "as_published/x", "kind": "as_published", "mode": "eager", "steps_per_call": 1,
                           "batch_size": 128, "variant": "dlwp_naive_sequential", "status": "ok", "reason": None,
                           "metrics": metrics})
    markdown = to_markdown(load_results(write_results(tmp_path / "r.json", doc)))
    table = markdown.split("## Tutorials as published")[1].split("## ")[0]
    row = next(line for line in table.splitlines() if line.startswith("| dlwp_naive_sequential"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3:8] == ["40.0 ms†", "10.0 ms", "2.00 ms (xla, K=16)", "4.00x", "20.00x (18.0–22.0)"]
    fixed = f"{machine_recipe['metrics']['reproduced_accuracy']:.4f}"
    assert cells[9:] == ["0.8123", fixed, "0.8100 (epoch 3)"] and "capped," not in table
    noisy = markdown.split("## Noisy measurements")[1]
    assert "dlwp_naive_sequential: median 40.0 ms, IQR 20.0 ms (50.0% of the median, n=10)" in noisy


def test_a_recipe_measured_in_two_runs_joins_its_newest_run_whatever_the_file_names(tmp_path):
    """The newest full-length recipe run, not the last file read (an older capped quick run), is the fixed figure."""
    from tfbench.reports.as_published import joined
    from tfbench.reports.data import load_results

    new = fixture_document()
    recipe = next(r for r in new["records"] if r["variant"] == "dlwp_naive_sequential")
    recipe["metrics"].update(full_length=True, reproduced_accuracy=0.8158)
    new["records"].append({**{k: recipe[k] for k in ("approach", "workload", "device", "dataset", "batch_size")},
                           "id": "as_published/x", "kind": "as_published", "mode": "eager", "steps_per_call": 1,
                           "variant": "dlwp_naive_sequential", "status": "ok", "reason": None,
                           "metrics": {"published_accuracy": 0.8194, "published_full_length": True}})
    old = json.loads(json.dumps(new))
    old["run_id"], old["updated"] = "older-run", "2020-01-01T00:00:00+00:00"
    old["records"] = [r for r in old["records"] if r["kind"] == "recipe"]
    next(r for r in old["records"] if r["variant"] == "dlwp_naive_sequential")["metrics"].update(
        full_length=False, reproduced_accuracy=None, final_accuracy=0.79)
    # "a-new.json" sorts before "z-old.json": file order alone would pick the old capped record.
    frame = load_results([write_results(tmp_path / "a-new.json", new), write_results(tmp_path / "z-old.json", old)])
    row = joined(frame).iloc[-1]
    assert (row["fixed_accuracy"], row["fixed_full_length"]) == (0.8158, True)
