"""The reports package on small fixture results files: no TensorFlow, no timing assertions.

Fixtures: ``tests/fixtures/results_cpu.json`` (a CPU machine, quick profile: every kind of record, an
unsupported, a skipped and two noisy ones, two batch sizes, K=1 and K=4) and ``results_gpu.json`` (a second
machine with a T4: step times, a failed XLA record, one accuracy run).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from tfbench.benchmarks import cli
from tfbench.benchmarks.results import ResultsError
from tfbench.reports import (
    approach_colour,
    load_results,
    plot_accuracy_curves,
    plot_batch_size,
    plot_speedup,
    plot_step_time,
    plot_throughput,
    plot_time_to_accuracy,
    to_markdown,
    write_report,
)
from tfbench.reports import report as report_module
from tfbench.reports.data import APPROACH_COLOURS, COLUMNS
from tfbench.reports.markdown import percent, sig
from tfbench.reports.report import PAGES, Chart, Page, anchor, chart_order, detail_page, index_page

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CPU = FIXTURES / "results_cpu.json"
GPU = FIXTURES / "results_gpu.json"
CPU_MACHINE, GPU_MACHINE = "3f9a1c0b2d4e", "b7e2041c9a55"  # environment.machine_id of the two fixtures
# The headings of the report in one document (to_markdown): the headline, then each page's sections in order.
SECTIONS = ["The answer in one screen", "Step time", "Speedup over eager", "Throughput by device", "Roofline",
            "Where the time goes", "Input pipeline", "Accuracy and time-to-accuracy", "Documented recipes",
            "Tutorials as published", "Scaling out with tf.distribute",
            "Retracing, memory growth and effective settings", "Steps per call: the knee", "Mixed precision",
            "Peers", "Summary", "Environment", "Unsupported, skipped and failed records", "Noisy measurements"]
INDEX_LIMIT = 20_000  # bytes: the index must read in minutes; the tables live on the detail pages
# Every chart the fixtures give data for, with its size in pixels.
CHART_SIZES = {"step_time.png": (1000, 500), "speedup.png": (1000, 500), "throughput.png": (1000, 500),
               "time_to_accuracy.png": (1000, 500), "batch_size.png": (1000, 500),
               "accuracy_curves_mlp.png": (1000, 800), "accuracy_curves_cnn.png": (1000, 800)}


def document(path: Path) -> dict:
    return json.loads(path.read_text())


def record(path: Path, **keys) -> dict:
    """The one record of a fixture file matching ``keys``."""
    matches = [r for r in document(path)["records"] if all(r.get(k) == v for k, v in keys.items())]
    assert len(matches) == 1, keys
    return matches[0]


def section(markdown: str, heading: str) -> str:
    """The text of one ``## heading`` section."""
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end != -1 else None]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def write_results(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_results([CPU, GPU])


@pytest.fixture(scope="module")
def markdown(frame) -> str:
    return to_markdown(frame)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return write_report([CPU, GPU], tmp_path_factory.mktemp("report"))


# --- load_results --------------------------------------------------------------------------------------------


def test_one_row_per_record_with_flattened_metrics():
    df = load_results(CPU)
    assert len(df) == len(document(CPU)["records"])
    assert list(df.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert {"env_tf_build_info_cpu_compiler", "env_tf_build_info_is_cuda_build"} <= set(df.columns)
    source = record(CPU, kind="step_time", approach="custom_tape", workload="mlp", mode="function",
                    steps_per_call=1, batch_size=32)
    row = df.set_index("id").loc[source["id"]]
    summary, metrics = source["metrics"]["step_time_s"], source["metrics"]
    assert row["step_time_median_s"] == summary["median"]
    assert row["step_time_p10_s"] == summary["p10"] and row["step_time_p90_s"] == summary["p90"]
    assert row["step_time_n"] == summary["n"] and row["step_time_samples"] == summary["samples"]
    assert [row["speedup_low"], row["speedup_high"]] == metrics["speedup_vs_eager_ci"]
    assert row["throughput_sps"] == metrics["throughput_sps"]
    assert row["device_peak_gflops"] == document(CPU)["devices"][0]["peak_gflops"]
    assert row["env_tensorflow"] == "2.21.0" and row["env_threads_intra_op"] == 8 and row["env_gpus"] == ""
    assert row["machine"] == CPU_MACHINE and row["device_label"] == f"cpu @ {CPU_MACHINE}"
    assert row["profile"] == "quick" and row["run_id"] == document(CPU)["run_id"]
    assert row["source_file"] == str(CPU)
    assert df["noisy"].dtype == "boolean" and df["noisy"].sum() == 2
    recipe = df[df["variant"] == "homl_ch12_custom_loop"].iloc[0]
    assert recipe["documented_metric"] == "val_accuracy" and isinstance(recipe["history"], list)


def test_two_machines_merge(frame):
    assert len(frame) == len(document(CPU)["records"]) + len(document(GPU)["records"])
    assert set(frame["machine"]) == {CPU_MACHINE, GPU_MACHINE}
    assert set(frame["device_label"]) == {f"cpu @ {CPU_MACHINE}", f"gpu:0 @ {GPU_MACHINE}"}
    gpu = frame[frame["machine"] == GPU_MACHINE].iloc[0]
    assert gpu["env_gpus"] == "Tesla T4" and gpu["env_tf_build_info_cuda_version"] == "12.5.1"


def test_the_same_run_twice_gives_each_record_once(tmp_path):
    copy = write_results(tmp_path / "copy_of_cpu.json", document(CPU))
    df = load_results([FIXTURES, CPU, copy])  # the directory holds CPU and GPU; CPU comes three times
    assert len(df) == len(document(CPU)["records"]) + len(document(GPU)["records"])
    assert not df.duplicated(["run_id", "id"]).any()


def test_machine_falls_back_to_cpu_model(tmp_path):
    doc = document(GPU)
    del doc["environment"]["machine_id"]
    df = load_results(write_results(tmp_path / "r.json", doc))
    assert set(df["machine"]) == {"Intel(R) Xeon(R) CPU @ 2.20GHz"}
    assert set(df["device_label"]) == {"gpu:0 @ Intel(R) Xeon(R) CPU @ 2.20GHz"}


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.json"
    path.write_text(CPU.read_text()[: len(CPU.read_text()) // 2])
    return path


def _not_results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "not_results.json", {"hello": "world"})


def _bad_record(tmp_path: Path) -> Path:
    doc = document(GPU)
    del doc["records"][3]["status"]
    return write_results(tmp_path / "bad_record.json", doc)


def _timing_without_median(tmp_path: Path) -> Path:
    doc = document(GPU)
    doc["records"][0]["metrics"]["step_time_s"] = {}
    return write_results(tmp_path / "no_median.json", doc)


@pytest.mark.parametrize("make", [lambda tmp: tmp / "missing.json", _truncated, _not_results, _bad_record,
                                  _timing_without_median],
                         ids=["missing", "truncated", "not-results", "bad-record", "no-median"])
def test_bad_results_file_is_named(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(ResultsError, match=path.name):
        load_results([CPU, path])


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(ResultsError, match="no \\*.json"):
        load_results(tmp_path)


# --- REPORT.md -----------------------------------------------------------------------------------------------


def test_every_section_in_order(markdown):
    assert markdown.startswith("# ")
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == SECTIONS


def test_the_index_opens_with_the_headline_then_one_short_answer_per_page(report):
    index = report.read_text()
    headings = [line[3:] for line in index.splitlines() if line.startswith("## ")]
    assert headings == ["The answer in one screen"] + [page.title for page in PAGES]
    assert index.index("| approach | at its best |") < index.index(f"## {PAGES[0].title}")
    assert index.index("![Step time by approach and mode](figures/step_time.png)") < index.index(f"## {PAGES[0].title}")
    assert "<details>" not in index and len(index.encode()) < INDEX_LIMIT
    for page in PAGES:  # each question links its detail page, which holds its sections
        body = section(index, page.title)
        assert f"](details/{page.slug}.md)" in body, page.slug
        detail = (report.parent / "details" / f"{page.slug}.md").read_text()
        assert detail.startswith(f"# {page.title}\n") and "](../REPORT.md)" in detail
        assert [line[3:] for line in detail.splitlines() if line.startswith("## ")] == [h for h, _ in page.sections]
    assert sorted(p.name for p in (report.parent / "details").iterdir()) == sorted(f"{p.slug}.md" for p in PAGES)


def test_the_index_links_only_pages_and_anchors_that_exist(report):
    pages = [report, *sorted((report.parent / "details").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path, _, anchor_ = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.is_file(), f"{page.name}: {target}"
            if anchor_:
                headings = [line.lstrip("#").strip() for line in linked.read_text().splitlines()
                            if line.startswith("#")]
                assert anchor_ in {anchor(h) for h in headings}, f"{page.name}: {target}"


def test_the_committed_index_is_short_and_is_what_the_committed_results_give(monkeypatch):
    monkeypatch.chdir(ROOT)  # the results files are named as `tox -e report` names them
    committed = (ROOT / "reports" / "REPORT.md").read_text()
    assert len(committed.encode()) < INDEX_LIMIT
    frame = load_results("reports/results")
    charts = {path.stem: f"figures/{path.name}" for path in sorted((ROOT / "reports" / "figures").glob("*.png"))}
    charts = {name: charts[name] for name in chart_order(frame) if name in charts}
    assert index_page(frame, charts, history=True) == committed, "reports/REPORT.md is stale: run `tox -e report`"
    assert "](history/HISTORY.md)" in committed and (ROOT / "reports" / "history" / "HISTORY.md").is_file()
    for page in PAGES:
        assert detail_page(frame, page, charts) == (ROOT / "reports" / "details" / f"{page.slug}.md").read_text()


def test_stale_detail_pages_and_charts_are_removed(tmp_path):
    (tmp_path / "details").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "details" / "gone.md").write_text("# a page an older report had\n")
    (tmp_path / "figures" / "gone.png").write_bytes(b"")
    write_report([GPU], tmp_path)
    assert not (tmp_path / "details" / "gone.md").exists() and not (tmp_path / "figures" / "gone.png").exists()
    assert (tmp_path / "details" / "step_time.md").exists()


def test_a_new_page_is_one_entry_in_the_registry(tmp_path, monkeypatch):
    def plot_records(frame, path):
        figure = Figure(figsize=(4, 2))
        figure.add_subplot().bar(["records"], [len(frame)])
        figure.savefig(path)
        return Path(path)

    page = Page("census", "How many records?", (("Record count", lambda frame: [f"{len(frame)} records."]),),
                charts=(Chart("census", "Records", plot_records),))
    monkeypatch.setattr(report_module, "PAGES", [*report_module.PAGES, page])
    written = write_report([GPU], tmp_path).read_text()
    count = len(load_results(GPU))
    assert "## How many records?" in written and "Details: [Record count](details/census.md)." in written
    assert "![Records](figures/census.png)" in written and (tmp_path / "figures" / "census.png").stat().st_size
    detail = (tmp_path / "details" / "census.md").read_text()
    assert "## Record count" in detail and f"{count} records." in detail and "](../figures/census.png)" in detail
    assert f"{count} records." in to_markdown(load_results(GPU))


def test_the_headline_ranks_each_approach_at_its_best_with_its_compiled_gains(markdown):
    rows = {}
    for line in section(markdown, "The answer in one screen").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "approach":
            rows.setdefault(cells[0], cells)  # the first table: mlp
    # The fixture's cpu at batch 32 (the chart's): the fastest approach at 1.00x, the others behind it.
    assert sorted(float(r[3].rstrip("x")) for r in rows.values())[0] == 1.00
    eager = record(CPU, kind="step_time", approach="custom_tape", workload="mlp", mode="eager", batch_size=32,
                   device="cpu", status="ok")
    function = record(CPU, kind="step_time", approach="custom_tape", workload="mlp", mode="function",
                      steps_per_call=1, batch_size=32, device="cpu")
    gain = eager["metrics"]["step_time_s"]["median"] / function["metrics"]["step_time_s"]["median"]
    assert rows["custom_tape"][4] == f"{gain:.2f}x"


def test_step_time_cells_are_rounded_medians_with_range(markdown):
    text = section(markdown, "Step time")
    source = record(CPU, kind="step_time", approach="custom_tape", workload="mlp", mode="function",
                    steps_per_call=1, batch_size=32)
    summary = source["metrics"]["step_time_s"]
    # 3 significant figures, trailing zeros kept: 0.0015 s -> "1.50 ms".
    expected = f"{summary['median'] * 1e3:#.3g} ms ({summary['p10'] * 1e3:#.3g}–{summary['p90'] * 1e3:#.3g})"
    assert expected in text
    noisy = record(CPU, kind="step_time", approach="naive_sequential", workload="mlp", mode="eager")
    assert f"{noisy['metrics']['step_time_s']['median'] * 1e3:#.3g} ms†" in text
    assert "† marks a noisy measurement" in text
    assert f"### cpu @ {CPU_MACHINE}, batch 128" in text and f"### gpu:0 @ {GPU_MACHINE}, batch 32" in text
    assert "function K=4" in text  # K is a column when several were measured


def test_sig_rounding():
    assert sig(0.0012345 * 1e3) == "1.23"
    assert sig(0.9) == "0.900"
    assert sig(25.04) == "25.0"
    assert sig(21333) == "21,300"
    assert sig(9.996) == "10.0"
    assert percent(0.123456) == "12.3%" and percent(0.00057) == "0.057%"


def test_speedup_throughput_roofline_numbers(markdown):
    source = record(CPU, kind="step_time", approach="raw_tf_nn", workload="cnn", mode="xla")
    metrics = source["metrics"]
    low, high = metrics["speedup_vs_eager_ci"]
    assert f"{metrics['speedup_vs_eager']:.2f}x ({low:.2f}–{high:.2f})" in section(markdown, "Speedup over eager")
    function = record(CPU, kind="step_time", approach="raw_tf_nn", workload="cnn", mode="function")
    ratio = function["metrics"]["step_time_s"]["median"] / metrics["step_time_s"]["median"]
    assert ratio < 1 and f"{ratio:.2f}x" in section(markdown, "Speedup over eager")
    throughput = section(markdown, "Throughput by device")
    assert f"| cpu @ {CPU_MACHINE}" in throughput and f"| gpu:0 @ {GPU_MACHINE}" in throughput  # side by side
    rounded = float(f"{metrics['throughput_sps']:.3g}")
    assert f"{rounded:,.0f}" in throughput
    roofline = section(markdown, "Roofline")
    assert f"{metrics['roofline_fraction'] * 100:.1f}%" in roofline
    assert "627 GFLOP/s" in roofline and "8,140 GFLOP/s" in roofline


def test_summary_names_fastest_approach_and_where_xla_hurt(frame, markdown):
    summary = section(markdown, "Summary")
    ok_cpu_mlp = frame[(frame["kind"] == "step_time") & (frame["status"] == "ok") & (frame["workload"] == "mlp")
                       & (frame["machine"] == CPU_MACHINE) & (frame["batch_size"] == 32)]
    fastest = ok_cpu_mlp.loc[ok_cpu_mlp["step_time_median_s"].idxmin()]
    assert (f"**mlp on cpu @ {CPU_MACHINE}** (batch 32): the fastest approach is {fastest['approach']} "
            f"({fastest['mode']}, K={fastest['steps_per_call']}) at "
            f"{fastest['step_time_median_s'] * 1e3:#.3g} ms") in summary
    assert f"XLA hurt (slower than plain `tf.function`) on cnn on cpu @ {CPU_MACHINE} (4 of 4" in summary
    assert "6 of 8 training runs reached their target" in summary


def test_environment_table_per_machine(markdown):
    text = section(markdown, "Environment")
    assert f"### {CPU_MACHINE}" in text and f"### {GPU_MACHINE}" in text
    for value in ("2.21.0", "2.20.0", "3.12.0", "AMD EPYC 7763 64-Core Processor", "Tesla T4",
                  "intra-op 8, inter-op 2", "69e5603", "quick", "2026-11-23T10:15:00+00:00"):
        assert value in text


def test_accuracy_and_recipes(markdown):
    text = section(markdown, "Accuracy and time-to-accuracy")
    source = record(CPU, kind="accuracy", approach="custom_tape", workload="mlp")["metrics"]
    assert f"| {source['test_accuracy']:.4f} " in text and f"{source['time_to_accuracy_s']:#.3g} s" in text
    assert "not reached" in text
    recipes = section(markdown, "Documented recipes")
    homl = record(CPU, kind="recipe", variant="homl_ch12_custom_loop")["metrics"]
    assert f"{homl['documented_accuracy']:.4f}" in recipes and f"{homl['reproduced_accuracy']:.4f}" in recipes
    assert f"{homl['reproduced_accuracy'] - homl['documented_accuracy']:+.4f}" in recipes
    assert "not reported" in recipes  # the blog recipe documents no accuracy
    assert "resets mean_loss | metrics once per epoch" in recipes  # the notes, under the table


def test_a_pipe_in_a_cell_does_not_split_the_table(tmp_path):
    doc = document(CPU)
    next(r for r in doc["records"] if r["kind"] == "recipe")["metrics"]["title"] = "loss | accuracy"
    text = section(to_markdown(load_results(write_results(tmp_path / "r.json", doc))), "Documented recipes")
    row = next(line for line in text.splitlines() if "loss \\| accuracy" in line)
    header = next(line for line in text.splitlines() if line.startswith("| Recipe"))
    assert row.count(" | ") == header.count(" | ")  # as many cells as the header


def test_unsupported_skipped_failed_records_listed_with_reasons(frame, markdown):
    text = section(markdown, "Unsupported, skipped and failed records")
    problems = frame[frame["status"] != "ok"]
    assert set(problems["status"]) == {"unsupported", "skipped", "failed"}
    for _, r in problems.iterrows():
        assert r["reason"] in text
    assert text.count("| unsupported ") == (problems["status"] == "unsupported").sum()


def test_noisy_measurements_listed(frame, markdown):
    text = section(markdown, "Noisy measurements")
    noisy = frame[frame["noisy"].fillna(False)]
    assert text.count("\n- ") == len(noisy) == 2
    for _, r in noisy.iterrows():
        assert f"{r['workload']} · {r['approach']} · {r['mode']}" in text


def test_sections_without_data_say_so(tmp_path):
    doc = document(GPU)
    doc["records"] = [r for r in doc["records"] if r["kind"] == "step_time" and r["status"] == "ok"]
    text = to_markdown(load_results(write_results(tmp_path / "gpu_steps.json", doc)))
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == SECTIONS
    for line in ("No accuracy records in these results.", "No documented-recipe records in these results.",
                 "No input-pipeline records in these results.", "none unsupported, skipped or failed"):
        assert line in text
    doc["records"] = []
    empty = to_markdown(load_results(write_results(tmp_path / "empty.json", doc)))
    assert [line[3:] for line in empty.splitlines() if line.startswith("## ")] == SECTIONS
    assert "No step-time records in these results." in empty


def test_newest_run_of_a_machine_wins(tmp_path):
    newer = document(CPU)
    newer.update(run_id="20261124T000000Z-aaaaaa", created="2026-11-24T00:00:00+00:00")
    source = next(r for r in newer["records"] if r["id"] == record(CPU, kind="step_time", approach="keras_fit",
                                                                   workload="mlp", mode="xla")["id"])
    source["metrics"]["step_time_s"].update(median=0.0123456, p10=0.012, p90=0.013)
    df = load_results([CPU, write_results(tmp_path / "newer.json", newer)])
    assert len(df) == 2 * len(newer["records"])  # both runs are in the frame...
    text = section(to_markdown(df), "Step time")
    keras_mlp = [line for line in text.splitlines() if line.startswith("| mlp        | keras_fit ")]
    assert "12.3 ms (12.0–13.0)" in keras_mlp[0]  # ...the report shows the newer one's only
    assert len(keras_mlp) == 4  # step time and first call at batch 32 and 128: no duplicate rows


def test_unknown_chart_name_is_refused(frame):
    with pytest.raises(ValueError, match="unknown chart 'pie'"):
        to_markdown(frame, {"pie": "pie.png"})


# --- charts --------------------------------------------------------------------------------------------------


def test_write_report_writes_linked_pngs_of_the_right_size(report):
    assert report.name == "REPORT.md"
    details = "".join(path.read_text() for path in (report.parent / "details").glob("*.md"))
    assert sorted(p.name for p in (report.parent / "figures").glob("*.png")) == sorted(CHART_SIZES)
    for name, size in CHART_SIZES.items():
        path = report.parent / "figures" / name
        assert path.stat().st_size > 10_000, name
        assert png_size(path) == size, name
        assert f"](../figures/{name})" in details  # every chart on its detail page; the main ones on the index too
    assert "](figures/step_time.png)" in report.read_text() and "](figures/speedup.png)" in report.read_text()


@pytest.mark.parametrize("plot", [plot_step_time, plot_speedup, plot_throughput, plot_time_to_accuracy,
                                  plot_batch_size, lambda df, path: plot_accuracy_curves(df, path, "mlp")],
                         ids=["step_time", "speedup", "throughput", "time_to_accuracy", "batch_size",
                              "accuracy_curves"])
def test_charts_draw_only_ok_records(frame, tmp_path, plot):
    drawn = plot(frame, tmp_path / "chart.png")
    assert drawn is not None and not drawn.empty and (tmp_path / "chart.png").exists()
    assert set(drawn["status"]) == {"ok"}
    assert not set(drawn["id"]) & set(frame.loc[frame["status"] != "ok", "id"])


def test_step_time_chart_shows_the_main_device_and_smallest_batch(frame, tmp_path):
    drawn = plot_step_time(frame, tmp_path / "step_time.png")
    assert set(drawn["device_label"]) == {f"cpu @ {CPU_MACHINE}"}  # the device with most records
    assert set(drawn["batch_size"]) == {32} and set(drawn["steps_per_call"]) == {1}
    assert "naive_sequential" not in set(drawn.loc[drawn["workload"] == "cnn", "approach"])  # unsupported there


def test_chart_functions_write_nothing_without_data(tmp_path):
    empty = load_results(write_results(tmp_path / "empty.json", {**document(GPU), "records": []}))
    for plot in (plot_step_time, plot_speedup, plot_throughput, plot_time_to_accuracy, plot_batch_size):
        assert plot(empty, tmp_path / "chart.png") is None
    assert plot_accuracy_curves(empty, tmp_path / "chart.png", "mlp") is None
    assert not (tmp_path / "chart.png").exists()


def test_one_colour_per_approach():
    assert len(set(APPROACH_COLOURS.values())) == 5
    assert approach_colour("raw_tf_nn_fused") == approach_colour("raw_tf_nn_fused")  # deterministic
    assert approach_colour("raw_tf_nn_fused") not in APPROACH_COLOURS.values()


# --- the command line and the TensorFlow-free promise -------------------------------------------------------


def test_tfbench_report_writes_the_report_and_no_chart_without_data(tmp_path, capsys):
    doc = document(GPU)
    doc["records"] = [r for r in doc["records"] if r["kind"] == "step_time"]
    (tmp_path / "results").mkdir()
    write_results(tmp_path / "results" / "gpu_steps.json", doc)  # a directory: all *.json in it
    assert cli.main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "out" / "REPORT.md")
    markdown = Path(printed).read_text()
    written = sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    assert written == ["speedup.png", "step_time.png", "throughput.png"]  # one batch size, no accuracy records
    assert "accuracy_curves" not in markdown and "batch_size.png" not in markdown
    assert "No accuracy records in these results." in markdown


def test_tfbench_report_on_a_missing_file_is_one_line_and_status_2(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope.json"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("tfbench: error: ") and "nope.json" in error
    assert not (tmp_path / "out").exists()


def test_reports_never_import_tensorflow():
    code = ("import sys, reports, reports.cli; from benchmarks import cli; cli.build_parser('report'); "
            "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_roofline_names_each_approach_best_configuration_and_the_10_percent_tally(markdown):
    records = [r for r in document(CPU)["records"] if r["kind"] == "step_time" and r["status"] == "ok"]
    roofline = section(markdown, "Roofline")
    # Each approach's best (mode, K) by throughput on one workload and batch size, and its share of the fastest.
    cell = [r for r in records if r["workload"] == "mlp" and r["batch_size"] == records[0]["batch_size"]]
    best = {}
    for r in cell:
        if r["metrics"]["throughput_sps"] > best.get(r["approach"], {"metrics": {"throughput_sps": 0}})[
                "metrics"]["throughput_sps"]:
            best[r["approach"]] = r
    fastest = max(r["metrics"]["throughput_sps"] for r in best.values())
    rows = [line for line in roofline.splitlines() if f"| cpu @ {CPU_MACHINE}" in line and "| mlp " in line
            and f"| {records[0]['batch_size']} " in line and " K=" in line]
    assert len(rows) == len(best)
    for approach, r in best.items():
        row = next(line for line in rows if f"| {approach} " in line)
        assert f"| {r['mode']} K={r['steps_per_call']} " in row
        assert f"{r['metrics']['throughput_sps'] / fastest:.2f}x" in row
    # The tally counts a configuration when its median is within 10% of the best median of its setting.
    groups = {}
    for r in records:
        key = (r["workload"], r["mode"], r["steps_per_call"], r["batch_size"])
        groups.setdefault(key, []).append(r["metrics"]["step_time_s"]["median"])
    within = sum(r["metrics"]["step_time_s"]["median"] <= 1.1 * min(groups[(r["workload"], r["mode"],
                 r["steps_per_call"], r["batch_size"])]) for r in records)
    assert f"- cpu @ {CPU_MACHINE}: {within} of {len(records)} (" in roofline


def test_step_time_section_reports_the_harness_overhead_per_device(tmp_path):
    doc = document(CPU)
    step_times = [r for r in doc["records"] if r["kind"] == "step_time" and r["status"] == "ok"]
    for r, overhead in zip(step_times, (0.004, -0.002, 0.03)):
        r["metrics"]["harness_overhead_fraction"] = overhead
    text = section(to_markdown(load_results([write_results(tmp_path / "overhead.json", doc)])), "Step time")
    assert f"- cpu @ {CPU_MACHINE}: median 0.4% over 3 measurements (-0.2% to 3.0%; 2 within ±1%)" in text
    assert "harness's own overhead" not in section(to_markdown(load_results([CPU])), "Step time")


def test_roofline_says_how_far_behind_an_approach_is_and_why(tmp_path):
    doc = document(CPU)
    step_times = [r for r in doc["records"] if r["kind"] == "step_time" and r["status"] == "ok"]
    setting = (step_times[0]["workload"], step_times[0]["mode"], step_times[0]["steps_per_call"],
               step_times[0]["batch_size"])
    group = [r for r in step_times if (r["workload"], r["mode"], r["steps_per_call"], r["batch_size"]) == setting]
    assert len(group) >= 3
    others = [r for r in step_times if r not in group]
    for r in others:  # everything else ties, so only this setting has approaches behind
        r["metrics"]["step_time_s"]["median"] = 0.001
    fastest, costly, unexplained = group[:3]
    for r, median in ((fastest, 0.001), (costly, 0.0015), (unexplained, 0.0013)):
        r["metrics"]["step_time_s"]["median"] = median
    for r in group[3:]:
        r["metrics"]["step_time_s"]["median"] = 0.00105
    costly["metrics"]["known_cost"] = "two optimizers"
    roofline = section(to_markdown(load_results([write_results(tmp_path / "behind.json", doc)])), "Roofline")
    rows = [line for line in roofline.splitlines() if line.startswith(f"| cpu @ {CPU_MACHINE}") and "vs" not in line
            and ("two optimizers" in line or "timing noise" in line)]
    assert len(rows) == 2
    costly_row = next(line for line in rows if f"| {costly['approach']} " in line)
    assert "| 1.50x–1.50x " in costly_row and "| two optimizers " in costly_row
    # Behind in 1 of the approach's configurations with that mode and K (all workloads and batch sizes).
    alike = [r for r in step_times if (r["approach"], r["mode"], r["steps_per_call"]) == (
        costly["approach"], costly["mode"], costly["steps_per_call"])]
    assert f"| 1 of {len(alike)} " in costly_row
    unexplained_row = next(line for line in rows if f"| {unexplained['approach']} " in line)
    assert "| 1.30x–1.30x " in unexplained_row and "timing noise" in unexplained_row
    # With every approach within 10%, there is no such table.
    for r in group:
        r["metrics"]["step_time_s"]["median"] = 0.001
    roofline = section(to_markdown(load_results([write_results(tmp_path / "level.json", doc)])), "Roofline")
    assert "and why:" not in roofline


def test_the_memory_table_says_what_keras_fits_figure_holds_only_when_it_is_shown():
    from tfbench.reports.memory import memory_lines

    def frame(approaches):
        return pd.DataFrame({"approach": approaches, "peak_memory_bytes": [5 << 20] * len(approaches),
                             "harness_preplaced_bytes": [49 << 20] * len(approaches)})

    def grid(records, cell):
        return " | ".join(cell(r) for _, r in records.iterrows())

    with_fit = "\n".join(memory_lines(frame(["raw_tf_nn", "keras_fit"]), grid))
    assert "49.0 MiB" in with_fit and "5.00 MiB | 5.00 MiB" in with_fit
    assert "keras_fit's figure grows with those batches" in with_fit
    assert "keras_fit" not in "\n".join(memory_lines(frame(["raw_tf_nn"]), grid))


def test_free_text_keeps_its_double_underscores_in_markdown():
    from tfbench.reports.data import prose

    assert prose("runs Keras's Layer.__call__ in Python") == r"runs Keras's Layer.\_\_call\_\_ in Python"
    assert prose("runs Keras's `Layer.__call__` in Python") == "runs Keras's `Layer.__call__` in Python"
