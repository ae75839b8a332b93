"""``tfbench run``: the benchmark suite, written to one results file record by record.

This module is the command line only: it turns arguments into a :class:`~tfbench.benchmarks.plan.Plan`, runs
it through :func:`tfbench.benchmarks.suite.execute`, and prints. The stages themselves (step time, input
pipelines, accuracy, recipes) are one module each under :mod:`tfbench.benchmarks.stages`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfbench.benchmarks.commands import positive_int
from tfbench.benchmarks.multiworker import DEFAULT_TIMEOUT_S
from tfbench.benchmarks.plan import DATASET_CHOICES, PROFILES, STAGE_NAMES, Plan, Profile, build_plan, check_device
from tfbench.benchmarks.results import ResultsFile
from tfbench.errors import ConfigError, UsageError
from tfbench.implementations.distribute import STRATEGIES
from tfbench.implementations.interface import MODES

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
    parser.add_argument("--stages", nargs="+", choices=STAGE_NAMES,
                        help=f"only these stages (default: {' '.join(STAGE_NAMES)})")
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
    parser.add_argument("--strategy", default="none", choices=STRATEGIES,
                        help="tf.distribute: mirrored (this machine's GPUs, or its CPU split into logical devices) "
                             "or multiworker (TF_CONFIG, or local workers on loopback); measures the distributed "
                             "stage unless --stages says otherwise")
    parser.add_argument("--replicas", nargs="+", type=positive_int, metavar="N",
                        help="replica counts (mirrored: default 1 2 4, 1 always included; multiworker: the "
                             "cluster's, default 2 local workers or the TF_CONFIG cluster)")
    parser.add_argument("--worker-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help="stop local multiworker workers after S seconds (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    # Test-only: adds real busy work, a fraction of each record's warm-up step time, to every timed step.
    parser.add_argument("--inject-slowdown", type=float, default=0.0, help=argparse.SUPPRESS)


def make_plan(args: argparse.Namespace) -> Plan:
    try:
        check_device(args.device)
        replicas = args.replicas
        if args.strategy == "multiworker":
            from tfbench.benchmarks.multiworker import cluster_replicas

            replicas = cluster_replicas(replicas)  # TF_CONFIG checked here, before TensorFlow starts
        return build_plan(args.profile, approaches=args.approach, workloads=args.workload, modes=args.mode,
                          batch_sizes=args.batch_size, steps_per_call=args.steps_per_call, stages=args.stages,
                          dataset=args.dataset, data_dir=args.data_dir, samples=args.samples,
                          inject_slowdown=args.inject_slowdown, seed=args.seed, strategy=args.strategy,
                          replicas=replicas)
    except ConfigError as error:
        raise UsageError(str(error)) from None


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
    from tfbench.benchmarks.suite import execute

    resume = None
    if args.resume:
        resume = ResultsFile.open(args.resume)
        plan = Plan.from_dict(resume.document["config"]["plan"])
        threads = parse_threads(args.threads, PROFILES.get(plan.profile, PROFILES["quick"]),
                                recorded=resume.document["environment"].get("threads"))
    else:
        plan = make_plan(args)
        threads = parse_threads(args.threads, PROFILES[args.profile])
    if args.require_accuracy and {"accuracy", "recipe"} & set(plan.stages):
        from tfbench.implementations.datasets import load

        load(plan.dataset, data_dir=plan.data_dir)  # a DatasetError here is one line and exit 2

    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    if plan.strategy == "multiworker" and resume is None:
        from tfbench.benchmarks.multiworker import run_plan
        from tfbench.benchmarks.suite import new_run_id

        if args.worker_timeout <= 0:
            raise UsageError(f"--worker-timeout must be > 0 seconds, got {args.worker_timeout:g}")
        output = args.output or args.out / f"results-{new_run_id()}.json"
        results, kept = run_plan(plan, threads=threads, device=args.device, output=output,
                                 timeout_s=args.worker_timeout)
        if not kept:
            print("worker done; the chief writes the results file")
            return 0
    else:
        results = execute(plan, threads=threads, device=args.device, output=args.output, out_dir=args.out,
                          resume=resume, log=log)

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


# --- printing ----------------------------------------------------------------------------------------------


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
    from tfbench.benchmarks.stages.distributed import summary_table

    distributed = summary_table(records)
    if distributed:
        print()
        print(distributed)

