"""The published results schema (benchmarks/results.schema.json): the committed results, the fixtures and the
suite's own output conform to it, and a file that does not is one clear error."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import jsonschema
import pytest

from tfbench.benchmarks import results as results_module
from tfbench.benchmarks.cli import main
from tfbench.benchmarks.results import (
    KINDS,
    STATUSES,
    ResultsError,
    ResultsFile,
    load,
    make_record,
    schema,
    validate,
)

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted((REPO / "reports" / "results").glob("*.json")) + sorted((REPO / "tests" / "fixtures").glob("*.json"))


def test_the_schema_is_a_valid_json_schema_and_agrees_with_the_code():
    jsonschema.validators.validator_for(schema()).check_schema(schema())
    record = schema()["$defs"]["record"]["properties"]
    assert tuple(record["kind"]["enum"]) == KINDS
    assert tuple(record["status"]["enum"]) == STATUSES
    assert results_module.SCHEMA_VERSION in schema()["properties"]["schema_version"]["enum"]


def test_every_metric_is_declared_with_a_type_and_a_meaning():
    metrics = schema()["$defs"]["metrics"]
    assert metrics["additionalProperties"] is False
    for name, declaration in metrics["properties"].items():
        assert declaration.get("description"), name
        assert "type" in declaration or "$ref" in declaration, name


def test_the_metrics_the_docstring_lists_are_declared():
    # benchmarks/results.py's docstring names the metrics in prose; each must be in the schema too.
    paragraph = re.search(r"^Metrics\b.*?(?:\n\n|\Z)", results_module.__doc__, re.S | re.M).group(0)
    named = set(re.findall(r"``([a-z][a-z0-9_]*)``", paragraph))
    assert named, "no metric names found in the docstring's Metrics paragraph"
    assert named - set(schema()["$defs"]["metrics"]["properties"]) == set()


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_results_and_fixtures_conform(path):
    assert COMMITTED, "no committed results found"
    load(path)


def _document() -> dict:
    return json.loads((REPO / "tests" / "fixtures" / "results_cpu.json").read_text())


def _broken(change) -> dict:
    document = copy.deepcopy(_document())
    change(document)
    return document


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["records"][2]["metrics"].update(gflops_per_watt=3.0),
     "records[2].metrics: unknown metric 'gflops_per_watt' (not declared in results.schema.json)"),
    (lambda d: d["records"][1]["metrics"].update(noisy="yes"),
     "records[1].metrics.noisy: holds a string 'yes', expected true or false (the samples' IQR exceeds "
     "10% of their median) (in record "
     "step_time/keras_fit/mlp/function/k1/cpu/b32/synthetic/)"),
    (lambda d: d["records"][0]["metrics"]["step_time_s"].pop("median"),
     "records[0].metrics.step_time_s: missing 'median'"),
    (lambda d: d["records"][0]["metrics"].pop("step_time_s"), "records[0].metrics: missing 'step_time_s'"),
    (lambda d: d["records"][0].update(status="done"),
     "records[0].status: 'done' is not one of 'ok', 'unsupported', 'skipped', 'failed'"),
    (lambda d: d["records"][3].update(steps_per_call=0), "records[3].steps_per_call: 0 violates minimum 1"),
    (lambda d: d["environment"].update(cpu="x"), "environment: unknown field 'cpu'"),
    (lambda d: d.pop("records"), "missing 'records'; is it a tf-training-bench results file?"),
])
def test_the_first_problem_is_named_by_its_place_in_the_document(change, problem):
    with pytest.raises(ResultsError) as error:
        validate(_broken(change), "x.json")
    assert str(error.value).startswith(f"x.json: {problem}")
    assert "\n" not in str(error.value)


def test_an_unknown_schema_version_is_named():
    with pytest.raises(ResultsError, match=r"x.json: schema_version 7 is not one this suite reads \(1\)"):
        validate({**_document(), "schema_version": 7}, "x.json")
    with pytest.raises(ResultsError, match="no schema_version"):
        validate({"hello": "world"}, "x.json")


def test_report_rejects_a_nonconforming_file_in_one_line_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_broken(lambda d: d["records"][4]["metrics"].update(watts=80))))
    assert main(["report", str(REPO / "tests" / "fixtures" / "results_gpu.json"), str(bad),
                 "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    record = _document()["records"][4]["id"]
    assert err == f"tfbench: error: {bad}: records[4].metrics: unknown metric 'watts' " \
                  f"(not declared in results.schema.json) (in record {record})\n"
    assert not (tmp_path / "report" / "REPORT.md").exists()


def test_a_real_run_writes_only_declared_fields_and_metrics(tmp_path):
    # Step time (eager and compiled, K 1 and 2, with the gate's reference kernel), the input pipelines and
    # the accuracy stage, on synthetic data: what the suite writes, checked against the schema. (The other
    # runs of the tests, e.g. test_harness's, read their output through the same validating load.)
    path = tmp_path / "run.json"
    assert main(["run", "--profile", "gate", "--approach", "raw_tf_nn", "--workload", "mlp", "--mode", "eager",
                 "function", "--steps-per-call", "1", "2", "--batch-size", "8", "--stages", "step_time",
                 "input_pipeline", "accuracy", "--dataset", "synthetic", "--samples", "2", "--quiet",
                 "--output", str(path)]) == 0
    document = json.loads(path.read_text())
    validate(document, str(path))
    kinds = {(r["kind"], r["status"]) for r in document["records"]}
    assert kinds == {("step_time", "ok"), ("input_pipeline", "ok"), ("accuracy", "ok")}
    assert all("reference_s" in r["metrics"] for r in document["records"] if r["kind"] == "step_time")


@pytest.mark.parametrize("name", ["doit_raw_cnn", "homl_dual_optimizer", "dlwp_naive"])
def test_a_recipe_record_writes_only_declared_metrics(monkeypatch, name):
    # The recipe stage's metrics, from the code that writes them, on a little synthetic data (with a
    # validation split where the recipe has one).
    from tfbench.benchmarks import training
    from tfbench.implementations.datasets import load as load_dataset
    from tfbench.implementations.recipes import RECIPES

    recipe = RECIPES[name]
    small = load_dataset("synthetic", synthetic_sizes=(300, 100), validation_fraction=recipe.validation_fraction)
    monkeypatch.setattr(training, "load", lambda *args, **kwargs: small)
    metrics = training.run_recipe(recipe, epochs=1)
    record = make_record("recipe", approach=recipe.approach, workload=recipe.workload, mode=recipe.mode,
                         steps_per_call=1, device="cpu", batch_size=recipe.batch_size, dataset=recipe.dataset,
                         variant=recipe.name, metrics=metrics)
    validate({**_document(), "records": [record]}, "recipe record")


def test_strict_json_nulls_listed_in_nonfinite_values_are_checked_as_the_numbers_they_were(tmp_path):
    results = ResultsFile.create(tmp_path / "nan.json", run_id="r", config={}, environment={})
    history = [{"epoch": 1, "loss": float("nan"), "accuracy": 0.1, "train_time_s": 1.0, "test_accuracy": 0.1}]
    results.add(make_record("accuracy", approach="raw_tf_nn", workload="mlp", mode="function", steps_per_call=1,
                            device="cpu", batch_size=128, dataset="synthetic", status="failed",
                            reason="the training loss became nan", metrics={"history": history,
                                                                            "first_call_s": float("inf")}))
    document = load(results.path)
    assert document["nonfinite_values"] == {"/records/0/metrics/history/0/loss": "NaN",
                                            "/records/0/metrics/first_call_s": "Infinity"}
    assert document["records"][0]["metrics"]["history"][0]["loss"] is None  # as stored: strict JSON
    # A null the schema does not allow stays an error unless nonfinite_values accounts for it.
    unlisted = {**document, "nonfinite_values": {"/records/0/metrics/first_call_s": "Infinity"}}
    with pytest.raises(ResultsError,
                       match=r"records\[0\]\.metrics\.history\[0\]\.loss: holds null, expected a number"):
        validate(unlisted, "x.json")
    wrong = {**document, "nonfinite_values": {**document["nonfinite_values"], "/records/0/batch_size": "NaN"}}
    with pytest.raises(ResultsError, match="x.json: nonfinite_values: /records/0/batch_size does not name a null"):
        validate(wrong, "x.json")


def test_the_as_published_stage_writes_only_declared_metrics(tmp_path, monkeypatch):
    # Every tutorial's published loop against the fixed one, on a few hundred synthetic images.
    from tfbench.implementations import as_published

    original = as_published.raw_data
    monkeypatch.setattr(as_published, "raw_data", lambda dataset, data_dir=None, **_: original(
        "synthetic", synthetic_sizes=(320, 64)))
    path = tmp_path / "published.json"
    main(["run", "--profile", "gate", "--stages", "as_published", "--mode", "function", "--steps-per-call", "1",
          "--samples", "2", "--quiet", "--output", str(path)])
    document = load(path)
    assert {r["kind"] for r in document["records"]} == {"as_published"}
    assert any(r["status"] == "ok" and "published_accuracy" in r["metrics"] for r in document["records"])


def test_records_counted_3_x_forward_are_recounted_exactly_and_no_committed_figure_exceeds_its_limit(tmp_path):
    """The 3 x forward convention counted an input gradient no step computes: mlp b1024 read 101-108% of the
    matmul peak. Loading recounts such a record with the exact FLOPs, and every committed figure is <= 100%."""
    import json

    from tfbench.benchmarks.results import load
    from tfbench.implementations.workloads import get_workload

    mlp = get_workload("mlp")
    old = 6 * mlp.forward_macs()
    document = load(REPO / "tests" / "fixtures" / "results_cpu.json")
    record = next(r for r in document["records"] if r["kind"] == "step_time" and r["workload"] == "mlp"
                  and r["status"] == "ok")
    record["metrics"].update(flops_per_sample=old, roofline_fraction=1.05, achieved_gflops=210.0)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document))
    metrics = next(r for r in load(path)["records"] if r["id"] == record["id"])["metrics"]
    scale = mlp.flops_per_sample / old
    assert metrics["flops_per_sample"] == mlp.flops_per_sample
    assert metrics["roofline_fraction"] == pytest.approx(1.05 * scale) and metrics["roofline_fraction"] < 1
    assert metrics["achieved_gflops"] == pytest.approx(210.0 * scale)
    for committed in sorted((REPO / "reports" / "results").glob("*.json")):
        raw = json.loads(committed.read_text())  # as stored, not as recounted
        for r in raw["records"]:
            for name in ("roofline_fraction", "fraction_of_floor", "mfu"):
                value = (r.get("metrics") or {}).get(name)
                assert value is None or value <= 1, (committed.name, r["id"], name, value)


def test_a_bare_nan_metric_is_read_as_missing_with_one_warning_naming_the_records(tmp_path, capsys):
    # An older file (or one edited by hand) with a NaN where a summary belongs was refused whole before.
    document = _document()
    document["records"][3]["metrics"]["step_time_s"] = math.nan
    document["records"][0]["metrics"]["throughput_sps"] = math.inf
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document, allow_nan=True))
    loaded = load(old)
    assert "step_time_s" not in loaded["records"][3]["metrics"]
    assert loaded["records"][3]["status"] == "failed" and "step_time_s held NaN" in loaded["records"][3]["reason"]
    assert "throughput_sps" not in loaded["records"][0]["metrics"]
    assert loaded["records"][0]["metrics"]["step_time_s"] == document["records"][0]["metrics"]["step_time_s"]
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0
    assert "2 metric(s) held NaN or infinity" in warning
    assert "records[3].metrics.step_time_s" in warning and "records[0].metrics.throughput_sps" in warning
