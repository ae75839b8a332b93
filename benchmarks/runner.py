"""``tfbench run``: the benchmark suite, written to one results file record by record.

Stages (each a record kind):

* ``step_time``: for every approach x workload x batch size x device, the
  modes (eager / function / xla) and steps-per-call settings are measured
  interleaved in one process (:mod:`benchmarks.timing`), on device-resident
  synthetic batches, so the input pipeline is not what is timed. Speedups
  over eager are ratios of medians measured side by side.
* ``input_pipeline``: one step fed four ways: device-resident tensors,
  ``tf.data`` with prefetch, the tutorials' NumPy slicing, and NumPy slicing
  plus a per-step ``tf.one_hot``.
* ``accuracy``: each approach trained in function mode on the real dataset,
  with time-to-accuracy (evaluation time excluded).
* ``recipe``: the documented recipes, beside the figures the tutorials report.

The plan (every record id) is known before anything runs, so ``--resume``
skips what an interrupted run already wrote.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tfbench.benchmarks.commands import DATASET_CHOICES, positive_int
from tfbench.benchmarks.results import ResultsFile, is_noisy, make_record, summarize
from tfbench.errors import UsageError
from tfbench.implementations.interface import MODES

STAGES = ("step_time", "input_pipeline", "accuracy", "recipe")
REFERENCE = "reference"  # the reference kernel's key among a group's timed configurations
PIPELINES = ("device_resident", "tf_data_prefetch", "numpy_slicing", "numpy_slicing_one_hot")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    approaches: tuple[str, ...] | None = None  # None: all registered
    workloads: tuple[str, ...] = ("mlp", "cnn")
    modes: tuple[str, ...] = MODES
    batch_sizes: tuple[int, ...] = (128,)
    steps_per_call: tuple[int, ...] = (1, 16)  # K > 1 only for compiled modes: eager has no call to amortise
    rounds: int = 5
    round_budget_s: float = 0.08
    warmup: int = 3
    stages: tuple[str, ...] = STAGES
    accuracy_epochs: int = 3
    accuracy_batch_size: int = 128
    recipe_epochs: int | None = 3  # None: each recipe's documented epochs
    pipeline_batch_size: int = 128
    # Time a fixed NumPy kernel interleaved with each step-time group, for the regression gate.
    reference: bool = False
    roofline: bool = True  # measure the matmul peak (2-3 s) for roofline fractions
    # Threads per op (the intra-op pool); None: as many as cores. The inter-op pool always has one
    # thread per core. See benchmarks/PERFORMANCE.md, section 1.
    intra_op: int | None = None
    # Time all approaches of one workload and batch size in one interleaved group (True), so that
    # "approach A is x% slower than B" is measured on the same machine state; or one group per
    # approach (False), the grouping the gate was calibrated under.
    interleave_approaches: bool = True


PROFILES = {
    "quick": Profile("quick", "every approach x workload x mode at batch 128, K 1 and 16; 3 epochs of MNIST "
                              "each; recipes capped at 3 epochs (<= 10 min on 2 cores)"),
    "full": Profile("full", "batch sizes 32/128/256/1024, K 1, 16 and 64, more samples, 10 epochs of MNIST, "
                            "recipes to their documented epochs",
                    batch_sizes=(32, 128, 256, 1024), steps_per_call=(1, 16, 64), rounds=10, round_budget_s=0.15,
                    warmup=5, accuracy_epochs=10, recipe_epochs=None),
    "gate": Profile("gate", "the regression gate's small fixed set: step time only, function mode, K=1, "
                            "two approaches on mlp at batch 128",
                    approaches=("custom_tape", "keras_fit"), workloads=("mlp",), modes=("function",),
                    steps_per_call=(1,), rounds=5, round_budget_s=0.3, warmup=10, stages=("step_time",),
                    # One thread per op: the setting the gate was calibrated under (README).
                    reference=True, roofline=False, intra_op=1, interleave_approaches=False),
}


@dataclass
class Plan:
    """What a run measures: the profile with the user's filters applied."""

    profile: str
    approaches: list[str]
    workloads: list[str]
    modes: list[str]
    batch_sizes: list[int]
    steps_per_call: list[int]
    devices: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    dataset: str = "mnist"
    data_dir: str | None = None
    rounds: int = 5
    round_budget_s: float = 0.08
    warmup: int = 3
    samples: int | None = None
    accuracy_epochs: int = 3
    accuracy_batch_size: int = 128
    recipe_epochs: int | None = 3
    pipeline_batch_size: int = 128
    inject_slowdown: float = 0.0
    reference: bool = False
    roofline: bool = True
    interleave_approaches: bool = True
    seed: int = 0


# --- CLI ---------------------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", choices=PROFILES,
                        help="; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()))
    parser.add_argument("--approach", nargs="+", help="only these approaches (see `tfbench list`)")
    parser.add_argument("--workload", nargs="+", help="only these workloads (default: mlp cnn)")
    parser.add_argument("--mode", nargs="+", choices=MODES, help="only these modes")
    parser.add_argument("--device", default="auto", help="cpu | gpu | metal | all | auto (accelerators if any)")
    parser.add_argument("--batch-size", nargs="+", type=positive_int, help="batch sizes for step time")
    parser.add_argument("--steps-per-call", nargs="+", type=positive_int, metavar="K", help="steps per call")
    parser.add_argument("--stages", nargs="+", choices=STAGES, help=f"only these stages (default: {' '.join(STAGES)})")
    parser.add_argument("--dataset", default="mnist", choices=DATASET_CHOICES, help="dataset of the accuracy stage")
    parser.add_argument("--data-dir", help="folder with mnist/ IDX files (default: $TFBENCH_DATA_DIR, Keras cache)")
    parser.add_argument("--samples", type=positive_int, help="timed samples per configuration (overrides the profile)")
    parser.add_argument("--require-accuracy", action="store_true",
                        help="fail at once if the accuracy dataset cannot be had, instead of skipping that stage")
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for the results file")
    parser.add_argument("--output", type=Path, help="exact results file path (instead of --out/results-<id>.json)")
    parser.add_argument("--resume", type=Path, metavar="FILE", help="continue an interrupted run's results file")
    parser.add_argument("--report", type=Path, metavar="DIR", help="also write the report of this run to DIR")
    parser.add_argument("--threads", default=None, metavar="INTRA,INTER",
                        help="TensorFlow thread pools (default: as many threads per op and ops side by side "
                             "as cores; the gate profile: 1 thread per op; a resumed run: the run's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    # Test-only: adds real busy work, a fraction of each record's warm-up step time, to every timed step.
    parser.add_argument("--inject-slowdown", type=float, default=0.0, help=argparse.SUPPRESS)


def make_plan(args: argparse.Namespace) -> Plan:
    from tfbench.implementations import approaches
    from tfbench.implementations.workloads import WORKLOADS

    profile = PROFILES[args.profile]
    registered = list(approaches())
    for name in args.approach or []:
        if name not in registered:
            raise UsageError(f"unknown approach {name!r}; choose from: {', '.join(registered)}")
    for name in args.workload or []:
        if name not in WORKLOADS:
            raise UsageError(f"unknown workload {name!r}; choose from: {', '.join(WORKLOADS)}")
    if not 0 <= args.inject_slowdown < 10:
        raise UsageError(f"--inject-slowdown must be a fraction in [0, 10), got {args.inject_slowdown}")
    plan = Plan(
        profile=profile.name,
        approaches=list(args.approach or profile.approaches or registered),
        workloads=list(args.workload or profile.workloads),
        modes=list(args.mode or profile.modes),
        batch_sizes=list(args.batch_size or profile.batch_sizes),
        steps_per_call=sorted(set(args.steps_per_call or profile.steps_per_call)),
        stages=list(args.stages or profile.stages),
        dataset=args.dataset, data_dir=args.data_dir, rounds=profile.rounds,
        round_budget_s=profile.round_budget_s, warmup=profile.warmup, samples=args.samples,
        accuracy_epochs=profile.accuracy_epochs, accuracy_batch_size=profile.accuracy_batch_size,
        recipe_epochs=profile.recipe_epochs, pipeline_batch_size=profile.pipeline_batch_size,
        inject_slowdown=args.inject_slowdown, reference=profile.reference, roofline=profile.roofline,
        interleave_approaches=profile.interleave_approaches, seed=args.seed,
    )
    return plan


def parse_threads(text: str | None, profile: Profile, recorded: dict | None = None) -> dict:
    from tfbench.benchmarks.environment import cpu_count

    if text is None and recorded:
        # A resumed run keeps the thread pools its first records were measured with.
        return {"intra_op": recorded["intra_op"], "inter_op": recorded["inter_op"]}
    if text is None:
        # Both pools as large as the CPU: on this 2-core CPU the fastest setting for each workload's
        # best mode (benchmarks/PERFORMANCE.md, section 1).
        return {"intra_op": profile.intra_op or cpu_count(), "inter_op": cpu_count()}
    try:
        intra, inter = (int(part) for part in text.split(","))
        if intra < 0 or inter < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"--threads takes INTRA,INTER as two whole numbers >= 0 (0: TF decides), got {text!r}") \
            from None
    return {"intra_op": intra, "inter_op": inter}


def main(args: argparse.Namespace) -> int:
    if args.resume:
        results = ResultsFile.open(args.resume)
        plan = Plan(**results.document["config"]["plan"])
        threads = parse_threads(args.threads, PROFILES.get(plan.profile, PROFILES["quick"]),
                                recorded=results.document["environment"].get("threads"))
    else:
        plan = make_plan(args)
        threads = parse_threads(args.threads, PROFILES[args.profile])
    if args.require_accuracy and {"accuracy", "recipe"} & set(plan.stages):
        from tfbench.implementations.datasets import load

        load(plan.dataset, data_dir=plan.data_dir)  # a DatasetError here is one line and exit 2

    import tensorflow as tf

    from tfbench.benchmarks import devices as devices_module
    from tfbench.benchmarks.environment import capture

    # Before TensorFlow's runtime starts: thread pools and GPU memory growth.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads["intra_op"])
        tf.config.threading.set_inter_op_parallelism_threads(threads["inter_op"])
    except RuntimeError:  # the runtime is already up (tfbench run called in-process): record what is in force
        threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                   "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    devices_module.enable_memory_growth(tf)
    if args.resume:
        chosen = [d for d in devices_module.detect(tf) if d.name in plan.devices]
    else:
        chosen = devices_module.select(devices_module.detect(tf), args.device)
        plan.devices = [d.name for d in chosen]
    import keras

    keras.utils.set_random_seed(plan.seed)

    if not args.resume:
        run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid() % 0xFFFFFF:06x}"
        path = args.output or args.out / f"results-{run_id}.json"
        config = {"profile": plan.profile, "plan": asdict(plan)}
        results = ResultsFile.create(path, run_id=run_id, config=config,
                                     environment=capture(tf, chosen, threads), devices=[])
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    log(f"tfbench run: profile {plan.profile}, devices {', '.join(plan.devices)}, results {results.path}")

    suite = Suite(plan, chosen, results, log, tf)
    suite.measure_peaks()
    suite.run()
    results.save(complete=True)

    print_summary(results.records)
    skipped = [r for r in results.records if r["status"] == "skipped"]
    if skipped:
        print(f"\n!!! {len(skipped)} record(s) SKIPPED: {skipped[0]['reason']}", file=sys.stderr)
    failed = [r for r in results.records if r["status"] == "failed"]
    if failed:
        print(f"\n!!! {len(failed)} record(s) FAILED, e.g. {failed[0]['id']}: {failed[0]['reason']}", file=sys.stderr)
    if args.report:
        from tfbench.reports import write_report

        print(f"report: {write_report([results.path], args.report)}")
    print(f"results: {results.path}")
    return 0


# --- the suite ---------------------------------------------------------------------------------------------


class Suite:
    def __init__(self, plan: Plan, devices, results: ResultsFile, log, tf):
        self.plan, self.devices, self.results, self.log, self.tf = plan, devices, results, log, tf
        self.done = results.done_ids()
        self.unavailable: dict[str, str] = {}  # dataset -> why it cannot be had
        self.jobs = self._jobs()
        self.started = time.perf_counter()
        self.finished_jobs = 0

    # -- planning --

    def _step_configs(self) -> list[tuple[str, int]]:
        configs = []
        for mode in self.plan.modes:
            for k in self.plan.steps_per_call:
                if k == 1 or mode != "eager":
                    configs.append((mode, k))
        return configs

    def _jobs(self) -> list[tuple[str, dict, list[dict]]]:
        """(kind, parameters, the record stubs it will write), in run order."""
        from tfbench.implementations.recipes import RECIPES

        plan, jobs = self.plan, []

        def stub(kind, **key):
            base = {"approach": "", "workload": "", "mode": "function", "steps_per_call": 1, "device": "cpu",
                    "batch_size": 0, "dataset": "synthetic", "variant": ""}
            return make_record(kind, **{**base, **key})

        for device in self.devices:
            if "step_time" in plan.stages:
                # One job per workload and batch size, all approaches interleaved, ordered so that the
                # approaches of one mode and K are timed back to back; or (the gate) one per approach.
                groups = [plan.approaches] if plan.interleave_approaches else [[a] for a in plan.approaches]
                for workload in plan.workloads:
                    for batch_size in plan.batch_sizes:
                        for approaches in groups:
                            stubs = [stub("step_time", approach=approach, workload=workload, mode=mode,
                                          steps_per_call=k, device=device.name, batch_size=batch_size)
                                     for mode, k in self._step_configs() for approach in approaches]
                            jobs.append(("step_time", {"approaches": approaches, "workload": workload,
                                                       "batch_size": batch_size, "device": device}, stubs))
            if "input_pipeline" in plan.stages:
                stubs = [stub("input_pipeline", approach="custom_tape", workload="mlp", device=device.name,
                              batch_size=plan.pipeline_batch_size, variant=p) for p in PIPELINES]
                jobs.append(("input_pipeline", {"device": device}, stubs))
        device = self.devices[0]  # accuracy and recipes: on the first chosen device
        if "accuracy" in plan.stages:
            for workload in plan.workloads:
                for approach in plan.approaches:
                    stubs = [stub("accuracy", approach=approach, workload=workload, device=device.name,
                                  batch_size=plan.accuracy_batch_size, dataset=plan.dataset)]
                    jobs.append(("accuracy", {"approach": approach, "workload": workload, "device": device}, stubs))
        if "recipe" in plan.stages:
            for recipe in RECIPES.values():
                stubs = [stub("recipe", approach=recipe.approach, workload=recipe.workload, device=device.name,
                              batch_size=recipe.batch_size, dataset=recipe.dataset, variant=recipe.name)]
                jobs.append(("recipe", {"recipe": recipe, "device": device}, stubs))
        return jobs

    # -- running --

    def measure_peaks(self) -> None:
        from tfbench.benchmarks.roofline import matmul_gflops

        known = {d["name"]: d for d in self.results.document.get("devices", [])}
        for device in self.devices:
            if device.name in known and "peak_gflops" in known[device.name]:
                continue
            if not self.plan.roofline:
                known[device.name] = device.to_json()
                continue
            parallel = self.tf.config.threading.get_inter_op_parallelism_threads() if device.kind == "cpu" else 1
            peak = matmul_gflops(device, repeats=10, parallel=max(1, parallel), tf=self.tf)
            if parallel > 1:  # also one matmul at a time: what a chain of dependent ops can get
                single = matmul_gflops(device, repeats=5, parallel=1, tf=self.tf)
                peak["peak_gflops_single_op"] = single["peak_gflops"]
            known[device.name] = {**device.to_json(), **peak}
            self.log(f"{device.name}: {device.description}; float32 matmul peak {peak['peak_gflops']:.0f} GFLOP/s")
        self.results.document["devices"] = list(known.values())
        self.results.save()
        self.peaks = {name: d["peak_gflops"] for name, d in known.items() if "peak_gflops" in d}

    def run(self) -> None:
        todo = [job for job in self.jobs if not all(s["id"] in self.done for s in job[2])]
        if len(todo) < len(self.jobs):
            self.log(f"resuming: {len(self.jobs) - len(todo)} of {len(self.jobs)} jobs already done")
        for index, (kind, params, stubs) in enumerate(todo, 1):
            stubs = [s for s in stubs if s["id"] not in self.done]  # a resumed run keeps what it has
            started = datetime.now(timezone.utc).isoformat(timespec="seconds")
            start = time.perf_counter()
            try:
                records = getattr(self, f"_run_{kind}")(params, stubs)
            except Exception as error:  # one failing job is recorded, and the run goes on
                records = [{**s, "status": "failed", "reason": failure(error)} for s in stubs]
            duration = time.perf_counter() - start
            for record in records:
                record["started"] = started
                record["duration_s"] = duration / len(records)
                self.results.add(record)
            elapsed = time.perf_counter() - self.started
            eta = elapsed / index * (len(todo) - index)
            self.log(f"[{index}/{len(todo)}] {describe(records)}  (ETA {eta:.0f} s)")

    # -- step time --

    def _sampling(self) -> dict:
        """How many samples: the profile's time budget per round, or exactly ``--samples`` in all."""
        plan = self.plan
        sampling = {"rounds": plan.rounds, "round_budget_s": plan.round_budget_s, "warmup": plan.warmup}
        if plan.samples:  # exactly N: as many rounds as divide N, up to the profile's
            rounds = max(r for r in range(1, plan.rounds + 1) if plan.samples % r == 0)
            per_round = plan.samples // rounds
            sampling.update(rounds=rounds, min_per_round=per_round, max_per_round=per_round)
        return sampling

    def _bank(self, batch_size: int, batches: int, device):
        """Device-resident synthetic batches: (batches, batch, 28, 28, 1) and labels."""
        from tfbench.implementations.datasets import synthetic

        train, _ = synthetic(batches * batch_size, 1, seed=self.plan.seed)
        with self.tf.device(device.tf_device):
            x = self.tf.constant(train.x.reshape(batches, batch_size, 28, 28, 1))
            y = self.tf.constant(train.y.reshape(batches, batch_size))
        return x, y

    def _run_step_time(self, params, stubs):
        from tfbench.benchmarks import devices as dev
        from tfbench.benchmarks.timing import (
            Timed,
            first_and_warmup,
            harness_overhead,
            measure_interleaved,
            reference_kernel,
        )
        from tfbench.implementations import build, get_approach
        from tfbench.implementations.interface import TrainConfig
        from tfbench.implementations.workloads import get_workload

        tf, plan, device = self.tf, self.plan, params["device"]
        workload = get_workload(params["workload"])
        batch_size = params["batch_size"]
        sync = lambda: dev.synchronize(device, tf)  # noqa: E731
        records, timed, metas, peak_memory = [], {}, {}, {}
        for stub in stubs:
            approach = get_approach(stub["approach"])
            reason = approach.unsupported(workload, stub["mode"]) or device.unsupported_reason(stub["mode"])
            if reason:
                records.append({**stub, "status": "unsupported", "reason": reason})
            else:
                metas[stub["id"]] = stub
        if not metas:
            return records
        max_k = max(s["steps_per_call"] for s in metas.values())
        # Enough distinct batches for two calls of the largest K, at most ~64 MB of images.
        batches = max(2 * max_k, min(16, max(2, (64 << 20) // (batch_size * 784 * 4))))
        bank_x, bank_y = self._bank(batch_size, batches, device)
        calls_of = {}  # K -> each call's stack of K batches, shared by the configurations with that K
        with tf.device(device.tf_device):
            for record_key, stub in list(metas.items()):
                k = stub["steps_per_call"]
                if k not in calls_of:
                    calls = batches // k
                    calls_of[k] = ([tf.identity(bank_x[i * k:(i + 1) * k]) for i in range(calls)],
                                   [tf.identity(bank_y[i * k:(i + 1) * k]) for i in range(calls)])
                dev.reset_peak_memory(device, tf)
                try:
                    trainer = build(stub["approach"], workload,
                                    TrainConfig(mode=stub["mode"], steps_per_call=k, seed=plan.seed))
                    timed[record_key] = Timed(trainer.runner(*calls_of[k]), steps_per_call=k,
                                              inject_fraction=plan.inject_slowdown)
                    # Build, first call and warm-up run one configuration at a time: its own peak memory.
                    first_and_warmup(timed[record_key], plan.warmup, sync, time.perf_counter)
                except Exception as error:  # this configuration fails (e.g. out of memory); the group goes on
                    records.append({**metas.pop(record_key), "status": "failed", "reason": failure(error)})
                    timed.pop(record_key, None)
                    continue
                peak_memory[record_key] = dev.peak_memory_bytes(device, tf)
            # The approaches of one mode and K form a block: timed back to back, in turn first.
            blocks = {}
            for key in timed:
                blocks.setdefault((metas[key]["mode"], metas[key]["steps_per_call"]), []).append(key)
            blocks = list(blocks.values())
            if plan.reference:
                timed[REFERENCE] = Timed(reference_kernel())
                blocks.append([REFERENCE])
            measure_interleaved(timed, sync=sync, blocks=blocks, **self._sampling())
            # What the harness itself adds, on each approach's first compiled configuration (the cheapest
            # call, where bookkeeping would show most); on the CPU the sync is a no-op and the bare loop
            # is exact.
            overhead = {}
            if device.kind == "cpu" and not plan.inject_slowdown:
                first_compiled = {}
                for key, stub in metas.items():
                    if stub["mode"] != "eager":
                        first_compiled.setdefault(stub["approach"], key)
                overhead = {key: harness_overhead(timed[key], sync=sync) for key in first_compiled.values()}
        records = records + self._step_records(metas, timed, workload, device, peak_memory)
        for record in records:
            if record["id"] in overhead and record["status"] == "ok":
                record["metrics"]["harness_overhead_fraction"] = overhead[record["id"]]
            if REFERENCE in timed and record["status"] == "ok":
                record["metrics"]["reference_s"] = summarize(timed[REFERENCE].samples)
        return records

    def _step_records(self, metas, timed, workload, device, peak_memory):
        from tfbench.benchmarks.timing import bootstrap_ratio
        from tfbench.implementations import get_approach

        eager_keys = {stub["approach"]: key for key, stub in metas.items() if stub["mode"] == "eager"}
        peak = self.peaks.get(device.name)
        records = []
        for key, stub in metas.items():
            measured = timed[key]
            if measured.nonfinite:
                records.append({**stub, "status": "failed", "reason": "the loss became NaN or infinite"})
                continue
            summary = summarize(measured.samples)
            throughput = stub["batch_size"] / summary["median"]
            metrics = {"step_time_s": summary, "noisy": is_noisy(summary), "first_call_s": measured.first_call_s,
                       "throughput_sps": throughput, "flops_per_sample": workload.flops_per_sample,
                       "achieved_gflops": throughput * workload.flops_per_sample / 1e9,
                       "peak_memory_bytes": peak_memory.get(key)}
            if peak:
                metrics["roofline_fraction"] = throughput * workload.flops_per_sample / (peak * 1e9)
            eager_key = eager_keys.get(stub["approach"])
            if eager_key is not None:
                ratio, low, high = bootstrap_ratio(timed[eager_key].samples, measured.samples)
                metrics["speedup_vs_eager"] = ratio
                metrics["speedup_vs_eager_ci"] = [low, high]
            known_cost = get_approach(stub["approach"]).known_cost(workload, stub["mode"],
                                                                  stub["steps_per_call"])
            if known_cost:
                metrics["known_cost"] = known_cost
            if self.plan.inject_slowdown:
                metrics["injected_slowdown"] = self.plan.inject_slowdown
                metrics["injected_s_per_step"] = measured._inject_s / measured.steps_per_call
            records.append({**stub, "metrics": metrics})
        return records

    # -- input pipelines --

    def _run_input_pipeline(self, params, stubs):
        from tfbench.benchmarks import devices as dev
        from tfbench.benchmarks.timing import Timed, measure_interleaved
        from tfbench.implementations import build
        from tfbench.implementations.datasets import synthetic
        from tfbench.implementations.interface import TrainConfig

        tf, plan, device = self.tf, self.plan, params["device"]
        batch_size = plan.pipeline_batch_size
        train, _ = synthetic(100 * batch_size, 1, seed=plan.seed)
        x_np, y_np = train.x, train.y
        num_batches = len(x_np) // batch_size
        timed = {}
        with tf.device(device.tf_device):
            trainer = build("custom_tape", "mlp", TrainConfig(mode="function", seed=plan.seed))

            def numpy_slices(one_hot: bool):
                state = {"i": 0}

                def call():
                    start = (state["i"] % num_batches) * batch_size
                    state["i"] += 1
                    x_batch = x_np[start:start + batch_size]
                    y_batch = y_np[start:start + batch_size]
                    if one_hot:
                        # The tutorials encode labels per step, eagerly, outside the compiled step; our
                        # step takes integer labels, so this measures that per-step cost on its own.
                        tf.one_hot(y_batch, 10).numpy()
                    return trainer.steps(x_batch[None], y_batch[None])

                return call

            dataset = (tf.data.Dataset.from_tensor_slices((x_np, y_np)).shuffle(10_000, seed=plan.seed)
                       .batch(batch_size, drop_remainder=True).batch(1).repeat().prefetch(tf.data.AUTOTUNE))
            iterator = iter(dataset)
            bank_x = tf.constant(x_np[:16 * batch_size].reshape(16, 1, batch_size, 28, 28, 1))
            bank_y = tf.constant(y_np[:16 * batch_size].reshape(16, 1, batch_size))
            calls = {
                "device_resident": trainer.runner(list(bank_x), list(bank_y)),
                "tf_data_prefetch": lambda: trainer.steps(*next(iterator)),
                "numpy_slicing": numpy_slices(one_hot=False),
                "numpy_slicing_one_hot": numpy_slices(one_hot=True),
            }
            timed = {s["id"]: Timed(calls[s["variant"]]) for s in stubs}
            measure_interleaved(timed, sync=lambda: dev.synchronize(device, tf), **self._sampling())
        records = []
        for stub in stubs:
            summary = summarize(timed[stub["id"]].samples)
            records.append({**stub, "metrics": {"step_time_s": summary, "noisy": is_noisy(summary),
                                                "throughput_sps": batch_size / summary["median"]}})
        return records

    # -- accuracy and recipes --

    def _dataset_or_skip(self, name: str, stubs):
        """The dataset, or the stubs marked skipped; a dataset that cannot be had is tried once a run."""
        from tfbench.errors import DatasetError
        from tfbench.implementations.datasets import load

        if name not in self.unavailable:
            try:
                return load(name, data_dir=self.plan.data_dir), None
            except DatasetError as error:
                self.unavailable[name] = str(error)
        return None, [{**s, "status": "skipped", "reason": self.unavailable[name]} for s in stubs]

    def _run_accuracy(self, params, stubs):
        from tfbench.benchmarks.training import train
        from tfbench.implementations import get_approach
        from tfbench.implementations.interface import TrainConfig
        from tfbench.implementations.workloads import get_workload

        plan = self.plan
        reason = get_approach(params["approach"]).unsupported(get_workload(params["workload"]), "function")
        if reason:
            return [{**s, "status": "unsupported", "reason": reason} for s in stubs]
        data, skipped = self._dataset_or_skip(plan.dataset, stubs)
        if skipped:
            return skipped
        with self.tf.device(params["device"].tf_device):
            result = train(params["approach"], params["workload"], TrainConfig(mode="function", seed=plan.seed),
                           data, epochs=plan.accuracy_epochs, batch_size=plan.accuracy_batch_size, seed=plan.seed)
        return [{**stubs[0], "metrics": result}]

    def _run_recipe(self, params, stubs):
        from tfbench.benchmarks.training import run_recipe
        from tfbench.errors import DatasetError

        recipe = params["recipe"]
        if recipe.dataset in self.unavailable:
            return [{**s, "status": "skipped", "reason": self.unavailable[recipe.dataset]} for s in stubs]
        try:
            with self.tf.device(params["device"].tf_device):
                result = run_recipe(recipe, data_dir=self.plan.data_dir, epochs=self.plan.recipe_epochs,
                                    seed=self.plan.seed)
        except DatasetError as error:
            self.unavailable[recipe.dataset] = str(error)
            return [{**s, "status": "skipped", "reason": str(error)} for s in stubs]
        return [{**stubs[0], "metrics": result}]


# --- printing ----------------------------------------------------------------------------------------------


def failure(error: BaseException) -> str:
    """A record's failure reason: the exception's type and the first line of its message."""
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"[:500]


def describe(records: list[dict]) -> str:
    """One progress line for a job's records; a group of several approaches is labelled per record."""
    first = records[0]
    approaches = list(dict.fromkeys(r["approach"] for r in records))
    head = f"{first['kind']} {first['approach'] if len(approaches) == 1 else 'all approaches'} " \
           f"{first['workload']} b{first['batch_size']} {first['device']}"
    if first["kind"] == "recipe":
        head = f"recipe {first['variant']}"
    parts = []
    for r in records:
        label = r["variant"] or f"{r['mode']}/K{r['steps_per_call']}"
        if len(approaches) > 1:
            label = f"{r['approach']} {label}"
        m = r.get("metrics") or {}
        if r["status"] != "ok":
            parts.append(f"{label}: {r['status']}")
        elif "step_time_s" in m:
            parts.append(f"{label} {m['step_time_s']['median'] * 1e3:.3g} ms")
        elif "test_accuracy" in m:
            tta = m.get("time_to_accuracy_s")
            parts.append(f"test acc {m['test_accuracy']:.4f}" + (f", target in {tta:.1f} s" if tta else ""))
    return f"{head}: {'; '.join(parts)}"


def print_summary(records: list[dict]) -> None:
    from tabulate import tabulate

    rows = []
    for r in records:
        m = r.get("metrics") or {}
        if r["kind"] == "step_time" and r["status"] == "ok":
            speedup = m.get("speedup_vs_eager")
            rows.append([r["workload"], r["batch_size"], r["device"], r["approach"], r["mode"], r["steps_per_call"],
                         f"{m['step_time_s']['median'] * 1e3:.3g}", f"{m['throughput_sps']:,.0f}",
                         f"{speedup:.2f}x" if speedup else "", f"{100 * m.get('roofline_fraction', 0):.1f}%"
                         + ("  noisy" if m.get("noisy") else "")])
    if rows:
        print(tabulate(rows, headers=["workload", "batch", "device", "approach", "mode", "K", "ms/step",
                                      "samples/s", "vs eager", "roofline"]))
    rows = [[r["kind"], r["variant"] or r["approach"], r["workload"], r["dataset"],
             f"{(r.get('metrics') or {}).get('test_accuracy', float('nan')):.4f}",
             (r.get("metrics") or {}).get("time_to_accuracy_s") or ""]
            for r in records if r["kind"] in ("accuracy", "recipe") and r["status"] == "ok"]
    if rows:
        print()
        print(tabulate(rows, headers=["kind", "approach / recipe", "workload", "dataset", "test acc", "TTA s"]))

