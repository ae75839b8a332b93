"""The time budget (benchmarks/budget.py): the stopping rule on fake clocks, the cost model's sizing, the
smallest budget, the plan's budget field, and the progress bar and final answer on the console."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from tfbench.benchmarks.budget import (
    GROW_MARGIN,
    Budget,
    MachineSpeed,
    StoppingRule,
    median_interval,
    rel_halfwidth,
    size_training,
    stop_reason,
)
from tfbench.benchmarks.console import PREFIX, RunProgress
from tfbench.benchmarks.plan import build_plan
from tfbench.benchmarks.stages.base import Job
from tfbench.benchmarks.timing import Timed, measure_interleaved
from tfbench.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake(clock, duration):
    """A call whose result, forced, advances the clock by ``duration(n)`` for the n-th call."""
    state = {"n": 0}

    class Loss:
        def __float__(self):
            clock.now += duration(state["n"])
            state["n"] += 1
            return 0.5

    return lambda: Loss()


def test_the_median_interval_is_two_order_statistics_and_needs_enough_samples():
    assert median_interval([1.0] * 5) is None
    low, high = median_interval(list(range(1, 101)))
    assert (low, high) == (41, 61)  # ranks 50 -+ 1.96 * 10 / 2 of 1..100
    assert rel_halfwidth([2.0] * 20) == 0
    assert stop_reason([2.0] * 9, StoppingRule(min_samples=10)) is None
    assert stop_reason([2.0] * 10, StoppingRule(min_samples=10)) == "precision"
    noisy = [1.0, 3.0] * 10
    assert stop_reason(noisy, StoppingRule(min_samples=10, max_samples=20)) == "max_samples"


def test_a_steady_record_stops_on_precision_and_a_noisy_one_on_the_budget():
    clock = Clock()
    steady = Timed(fake(clock, lambda n: 0.001))
    noisy = Timed(fake(clock, lambda n: 0.001 if n % 2 else 0.004))
    measure_interleaved({"steady": steady, "noisy": noisy}, rounds=3, warmup=1, clock=clock,
                        stopping=StoppingRule(min_samples=10, target=0.02, max_samples=10_000), time_budget_s=2.0)
    assert steady.stopped_by == "precision" and steady.ci_rel_halfwidth == 0
    assert 10 <= len(steady.samples) < 150
    assert noisy.stopped_by == "budget" and noisy.ci_rel_halfwidth > 0.02
    # The group stops about when its time is spent: the last round overshoots by at most a round.
    assert clock.now < 2.0 * 1.3


def test_without_a_budget_the_sample_cap_stops_and_fixed_sampling_says_fixed():
    clock = Clock()
    noisy = Timed(fake(clock, lambda n: 0.001 if n % 2 else 0.004))
    measure_interleaved({"a": noisy}, rounds=2, warmup=1, clock=clock,
                        stopping=StoppingRule(min_samples=10, max_samples=50))
    assert noisy.stopped_by == "max_samples" and len(noisy.samples) == 50
    fixed = Timed(fake(clock, lambda n: 0.001))
    measure_interleaved({"a": fixed}, rounds=2, round_budget_s=0.0105, warmup=1, clock=clock)
    assert fixed.stopped_by == "fixed" and len(fixed.samples) == 20


def test_training_shrinks_epochs_first_then_the_training_set():
    assert size_training(3, 10.0, 40.0) == (3, 1.0)
    assert size_training(3, 10.0, 25.0) == (2, 1.0)
    assert size_training(3, 10.0, 5.0) == (1, 0.5)
    assert size_training(3, 10.0, 0.1) == (1, 0.1)  # never below the minimum share


def _jobs(plan):
    from tfbench.benchmarks.stages.base import Context

    context = Context(plan=plan, devices=[type("D", (), {"name": "cpu"})()], results=None, log=print, tf=None)
    step = Job("step_time", {"workload": "mlp"}, [context.stub("step_time", approach=a, mode=m)
                                                  for a in plan.approaches for m in plan.modes])
    accuracy = [Job("accuracy", {"workload": w}, [context.stub("accuracy", workload=w)]) for w in ("mlp", "cnn")]
    return [step, *accuracy]


def test_a_slower_machine_gets_less_training_and_a_too_small_budget_names_the_smallest():
    plan = build_plan("quick", approaches=["custom_tape", "keras_fit"], workloads=["mlp"])
    assert plan.budget_s == 300
    fast, slow = MachineSpeed(450.0, 40e-6), MachineSpeed(150.0, 40e-6)
    assert slow.slowdown == pytest.approx(3.0)
    jobs = _jobs(plan)
    on_fast = Budget.for_jobs(60.0, fast, jobs, plan)
    on_slow = Budget.for_jobs(60.0, slow, jobs, plan)
    cnn = jobs[2]
    assert on_fast.training(cnn, 3)[0] >= on_slow.training(cnn, 3)[0]
    assert on_slow.training(cnn, 3) < (3, 1.0)  # 3 CNN epochs do not fit a minute at a third of the speed
    with pytest.raises(ConfigError, match=r"too small .* about \d+ s \(--budget \d+\)"):
        Budget.for_jobs(5.0, slow, jobs, plan)
    # The profile's own default is not the user's choice: on a slow machine it grows to the smallest that fits,
    # so the main job runs, in a time stated before it starts.
    grown = Budget.for_jobs(5.0, slow, jobs, plan, grow=True)
    smallest = Budget.for_jobs(10_000.0, slow, jobs, plan).smallest_s()
    assert grown.budget_s == 10 * math.ceil(smallest * GROW_MARGIN / 10) and grown.budget_s > smallest


def test_the_budget_shares_sampling_and_corrects_itself_by_what_jobs_took():
    plan = build_plan("quick", approaches=["custom_tape", "keras_fit"], workloads=["mlp"])
    jobs = _jobs(plan)
    budget = Budget.for_jobs(100.0, MachineSpeed(450.0, 40e-6), jobs, plan)
    budget.start(jobs[0])
    assert budget.allotment_s > 0
    budget.sampled(budget.allotment_s)
    budget.done(jobs[0], duration_s=budget.allotment_s + 4 * budget.costs[id(jobs[0])].fixed_s)
    assert budget.correction == pytest.approx(4.0)  # its fixed work took 4x the model: the rest is scaled
    assert budget.eta_s() == pytest.approx(max(budget.remaining_s(), budget.smallest_s()))


def test_the_gate_keeps_its_fixed_sampling_and_the_full_profile_has_no_default_budget():
    assert build_plan("full").budget_s is None
    assert build_plan("full", budget_s=900).budget_s == 900
    assert build_plan("gate").budget_s is None
    with pytest.raises(ConfigError, match="gate profile keeps its calibrated"):
        build_plan("gate", budget_s=60)
    with pytest.raises(ConfigError, match="budget must be"):
        build_plan("quick", budget_s=0)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_no_control_codes_off_a_terminal_a_bar_on_one_and_nothing_when_quiet():
    plain = io.StringIO()
    progress = RunProgress(stream=plain)
    progress.start(3)
    progress.working("step_time mlp", 10)
    progress("[1/1] done")
    progress.advance(3, 0)
    progress.stop()
    assert plain.getvalue() == f"{PREFIX}[1/1] done\n" and "\x1b" not in plain.getvalue()
    terminal = FakeTerminal()
    progress = RunProgress(stream=terminal)
    progress.start(3)
    progress.working("step_time mlp", 75)
    progress.advance(2, 75)
    progress._bar.refresh()
    progress.stop()
    drawn = terminal.getvalue()
    assert "\x1b" in drawn and "2/3" in drawn and "ETA 1:15" in drawn and "step_time mlp" in drawn
    quiet = FakeTerminal()
    progress = RunProgress(quiet=True, stream=quiet)
    progress.start(3)
    progress("a line")
    progress.advance(3)
    progress.stop()
    assert quiet.getvalue() == ""


def test_the_final_answer_is_the_headline_for_a_terminal():
    from tfbench.reports.data import load_results
    from tfbench.reports.terminal import answer

    paths = sorted(FIXTURES.glob("*.json"))
    frame = load_results([p for p in paths if "step_time" in p.read_text()][:1])
    text = answer(frame)
    assert "fastest" in text and "ms/step" in text and "\x1b" not in text
    assert json.dumps(text)  # plain text


def _published_job(plan, name="homl_custom_loop", batch_size=32):
    from tfbench.benchmarks.stages.base import Context
    from tfbench.implementations.recipes import RECIPES

    context = Context(plan=plan, devices=[type("D", (), {"name": "cpu"})()], results=None, log=print, tf=None)
    recipe = RECIPES[name]
    return Job("as_published", {"recipe": recipe}, [context.stub(
        "as_published", approach=recipe.approach, workload=recipe.workload, mode="eager",
        batch_size=batch_size, dataset=recipe.dataset, variant=name)])  # the loop's own batch (no Keras import)


def test_the_published_loops_training_is_costed_eager_and_sized_by_its_measured_step():
    from tfbench.benchmarks.budget import PUBLISHED_STEP_OVERHEAD_S, SAMPLING_HEADROOM, epoch_seconds, job_cost

    plan = build_plan("quick")
    job = _published_job(plan)
    cost = job_cost(job, plan, slowdown=2.0)
    compiled = epoch_seconds("homl_cnn", 55000, 32, 2.0)
    # One epoch as published (the quick profile's cap) costs its eager steps' overhead besides the math.
    assert cost.train_s > compiled + 2.0 * 1000 * PUBLISHED_STEP_OVERHEAD_S
    assert cost.min_train_s == pytest.approx(0.1 * cost.train_s)
    budget = Budget.for_jobs(10_000.0, MachineSpeed(450.0, 40e-6), [job], plan)
    assert budget.training(job, 1) == (1, 1.0)  # a roomy budget: the whole epoch
    speed = MachineSpeed(450.0, 40e-6)
    model = Budget.for_jobs(10_000.0, speed, [job], plan)
    model_epoch = model.costs[id(job)].train_s
    half = model.costs[id(job)].fixed_s + SAMPLING_HEADROOM * model.min_sampling_s(6) + 0.5 * model_epoch
    tight = Budget.for_jobs(half, speed, [job], plan)  # room for half the epoch as modelled
    assert tight.training(job, 1, epoch_s=model_epoch)[1] < 1.0
    # The job timed its step 3x slower than the model: it trains a third as much, in the same seconds.
    as_modelled, measured = tight.training(job, 1, epoch_s=model_epoch)[1], tight.training(
        job, 1, epoch_s=3 * model_epoch)[1]
    assert as_modelled == pytest.approx(0.5, abs=0.01)
    assert measured == pytest.approx(0.5 / 3, abs=0.01)


def test_a_budgeted_published_loop_trains_a_share_of_an_epoch_and_says_so():
    from types import SimpleNamespace

    from tfbench.benchmarks.stages import as_published as stage

    class Loop:  # a published loop's interface: steps, its history at an epoch's end, its figures
        epochs, steps_per_epoch = 20, 100

        def __init__(self):
            self.steps_done, self.history = 0, []

        def step(self):
            self.steps_done += 1
            if self.steps_done % self.steps_per_epoch == 0:
                self.history.append({"accuracy": 0.9})

        def result(self):
            return {"test_accuracy": 0.5}

    asked = {}

    class FakeBudget:
        def training(self, job, epochs, epoch_s=None):
            asked.update(epochs=epochs, epoch_s=epoch_s)
            return 1, 0.25

    recipe = SimpleNamespace(documented_metric="test_accuracy", documented_accuracy=None, documented_epoch=None,
                             title="t")
    context = SimpleNamespace(plan=SimpleNamespace(as_published_epochs=1), budget=FakeBudget())
    loop = Loop()
    metrics = stage.accuracy(context, recipe, loop, job=object(), step_s=0.03)
    assert asked == {"epochs": 1, "epoch_s": pytest.approx(3.0)}  # sized by the step it timed, 100 steps an epoch
    assert loop.steps_done == 25 and metrics["train_fraction"] == 0.25
    assert metrics["published_epochs"] == 0 and not metrics["published_full_length"]
    full_batch = Loop()
    full_batch.steps_per_epoch = 1  # 88% of a one-step epoch is that step: the whole epoch, said so
    metrics = stage.accuracy(context, recipe, full_batch, job=object(), step_s=0.3)
    assert full_batch.steps_done == 1 and metrics["published_epochs"] == 1 and "train_fraction" not in metrics
    unbudgeted = stage.accuracy(SimpleNamespace(plan=context.plan, budget=None), recipe, Loop())
    assert unbudgeted["published_epochs"] == 1 and "train_fraction" not in unbudgeted
