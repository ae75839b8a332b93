"""``tfbench run``: the benchmark suite, written to one results file record by record.

This module is the command line only: it turns arguments into a :class:`~tfbench.benchmarks.plan.Plan`, runs
it through :func:`tfbench.benchmarks.suite.execute`, and prints. The stages themselves (step time, input
pipelines, accuracy, recipes) are one module each under :mod:`tfbench.benchmarks.stages`.

What it promises (docs/reliability.md):

* exit status 0 when every record is ok, unsupported or skipped; :data:`EXIT_FAILED` (3) when a record
  failed (an exception, a NaN loss), the results file and the report written all the same; 2 for bad input or
  a file that cannot be written (one line); 130 / 143 when interrupted by SIGINT / SIGTERM;
* an option that no stage of the run honours (``--strategy`` with ``--stages step_time``) is refused, in one
  line naming the stages that would, before anything else: each stage declares the options it honours in its
  ``FLAGS`` (:mod:`tfbench.benchmarks.stages.base`), beyond the ones every run honours
  (:data:`~tfbench.benchmarks.plan.COMMON_FLAGS`);
* every output path is checked before TensorFlow is imported; an existing ``--output`` file is never
  replaced without ``--overwrite``; one process at a time writes a results file (``WriterLock``);
* ``--resume FILE`` keeps the records that are final (ok, unsupported) and measures again those that were
  skipped or failed, with the flags that may make them work now (``--data-dir``, ``--no-verify``,
  ``--threads``); a flag that would change what the run measures is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfbench.benchmarks.commands import EXIT_FAILED, positive_int
from tfbench.benchmarks.console import RunProgress, progress, starting_tensorflow
from tfbench.benchmarks.multiworker import DEFAULT_TIMEOUT_S
from tfbench.benchmarks.plan import (
    BACKENDS,
    DATASET_CHOICES,
    FULL_ONLY_STAGES,
    PROFILES,
    STAGE_NAMES,
    Plan,
    Profile,
    build_plan,
    check_device,
    refuse_ignored,
    run_stages,
)
from tfbench.benchmarks.results import ResultsFile
from tfbench.errors import ConfigError, UsageError
from tfbench.implementations.distribute import STRATEGIES
from tfbench.implementations.interface import MODES

# --- CLI ---------------------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    # Defaults that matter are applied in make_plan, not here: None tells a resumed run what was given.
    parser.add_argument("--profile", choices=PROFILES,
                        help="; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()))
    parser.add_argument("--approach", nargs="+", help="only these approaches (see `tfbench list`)")
    parser.add_argument("--workload", nargs="+", help="only these workloads (default: mlp cnn)")
    parser.add_argument("--mode", nargs="+", choices=MODES, help="only these modes")
    parser.add_argument("--device", help="cpu | gpu | metal | all | auto (default: accelerators if any)")
    parser.add_argument("--batch-size", nargs="+", type=positive_int, help="batch sizes for step time")
    parser.add_argument("--steps-per-call", nargs="+", type=positive_int, metavar="K", help="steps per call")
    parser.add_argument("--stages", nargs="+", choices=STAGE_NAMES,
                        help=f"only these stages (default: {' '.join(STAGE_NAMES)}; the quick profile leaves out "
                             f"{' '.join(FULL_ONLY_STAGES)})")
    parser.add_argument("--dataset", choices=DATASET_CHOICES, help="dataset of the accuracy stage (default: mnist)")
    parser.add_argument("--data-dir", help="folder with mnist/ IDX files (default: $TFBENCH_DATA_DIR, Keras cache)")
    parser.add_argument("--no-verify", action="store_true",
                        help="use dataset files whose checksums do not match (their structure is still checked)")
    parser.add_argument("--samples", type=positive_int, help="timed samples per configuration (overrides the profile)")
    parser.add_argument("--require-accuracy", action="store_true",
                        help="fail at once if the accuracy dataset cannot be had, instead of skipping that stage")
    parser.add_argument("--out", type=Path, help="folder for the results file (default: results/)")
    parser.add_argument("--output", type=Path, help="exact results file path (instead of --out/results-<id>.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--resume", type=Path, metavar="FILE",
                        help="continue a run's results file: measure what is missing, skipped or failed")
    parser.add_argument("--report", type=Path, metavar="DIR", help="also write the report of this run to DIR")
    parser.add_argument("--threads", default=None, metavar="INTRA,INTER",
                        help="TensorFlow thread pools (default: as many threads per op and ops side by side "
                             "as cores; the gate profile: 1 thread per op; a resumed run: the run's own)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="tf.distribute: mirrored (this machine's GPUs, or its CPU split into logical devices) "
                             "or multiworker (TF_CONFIG, or local workers on loopback); measures the distributed "
                             "stage unless --stages says otherwise")
    parser.add_argument("--replicas", nargs="+", type=positive_int, metavar="N",
                        help="replica counts (mirrored: default 1 2 4, 1 always included; multiworker: the "
                             "cluster's, default 2 local workers or the TF_CONFIG cluster)")
    parser.add_argument("--worker-timeout", type=float, metavar="S",
                        help=f"stop local multiworker workers after S seconds (default {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--backend", nargs="+", choices=BACKENDS,
                        help="frameworks of the peer stage: tensorflow (its best styles) and/or jax (Keras 3 on "
                             "JAX, plain JAX; pip install 'tf-training-bench[peers]'); default both")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="seconds of benchmarking the run should take: measures the machine, then samples each "
                             "record until its median is precise enough or its share is spent, and sizes the "
                             "training stages to fit (quick profile: 300; full: fixed sampling unless given; "
                             "docs/budget.md)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors (no progress bar or lines, "
                                                             "no summary)")
    # Test-only: adds real busy work, a fraction of each record's warm-up step time, to every timed step.
    parser.add_argument("--inject-slowdown", type=float, help=argparse.SUPPRESS)
    # Test-only: the slowdown goes into this one record, APPROACH/WORKLOAD/MODE, instead of every record.
    parser.add_argument("--inject-into", default=None, help=argparse.SUPPRESS)


# Flags that change what a run measures: a resumed run keeps its stored plan and refuses them.
MEASURING_FLAGS = ("profile", "approach", "workload", "mode", "device", "batch_size", "steps_per_call", "stages",
                   "dataset", "samples", "seed", "inject_slowdown", "inject_into", "out", "output", "overwrite",
                   "strategy", "replicas", "backend", "budget")


def given_options(args: argparse.Namespace) -> list[str]:
    """The dest names of the options the user gave: every default is None (or False for a switch), so that a
    value stands for itself; ``command`` is the subcommand's name, not an option."""
    return [name for name, value in vars(args).items()
            if name != "command" and value is not None and value is not False]


def make_plan(args: argparse.Namespace) -> Plan:
    try:
        # First: an option no stage of this run honours would be recorded but not used (issue 22).
        refuse_ignored(given_options(args), run_stages(args.profile or "quick", args.stages, args.strategy or "none"))
        if args.worker_timeout is not None and args.strategy != "multiworker":
            raise UsageError("--worker-timeout stops local multiworker workers: add --strategy multiworker or drop "
                             "--worker-timeout")
        check_device(args.device or "auto")
        replicas = args.replicas
        if args.strategy == "multiworker":
            from tfbench.benchmarks.multiworker import cluster_replicas

            replicas = cluster_replicas(replicas)  # TF_CONFIG checked here, before TensorFlow starts
        if args.worker_timeout is not None and not args.worker_timeout > 0:
            raise UsageError(f"--worker-timeout must be > 0 seconds, got {args.worker_timeout:g}")
        return build_plan(args.profile or "quick", approaches=args.approach, workloads=args.workload,
                          modes=args.mode, batch_sizes=args.batch_size, steps_per_call=args.steps_per_call,
                          stages=args.stages, dataset=args.dataset or "mnist", data_dir=args.data_dir,
                          samples=args.samples, inject_slowdown=args.inject_slowdown or 0.0, seed=args.seed or 0,
                          verify=not args.no_verify, strategy=args.strategy or "none", replicas=replicas,
                          backends=args.backend, budget_s=args.budget, inject_into=args.inject_into)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def required_datasets(plan: Plan) -> list[str]:
    """What ``--require-accuracy`` insists on: the accuracy stage's dataset, and each recipe's."""
    from tfbench.implementations.recipes import RECIPES

    names = [plan.dataset] if "accuracy" in plan.stages else []
    if "recipe" in plan.stages:
        names += [recipe.dataset for recipe in RECIPES.values()]
    return list(dict.fromkeys(names))


def parse_threads(text: str | None, profile: Profile, recorded: dict | None = None) -> dict:
    from tfbench.benchmarks.environment import cpu_count

    if text is None and recorded:
        # A resumed run keeps the thread pools its first records were measured with.
        return {"intra_op": recorded["intra_op"], "inter_op": recorded["inter_op"]}
    if text is None:
        # Both pools as large as the CPU: on this 2-core CPU the fastest setting for each workload's
        # best mode (docs/performance.md, section 1).
        return {"intra_op": profile.intra_op or cpu_count(), "inter_op": cpu_count()}
    try:
        intra, inter = (int(part) for part in text.split(","))
        if intra < 0 or inter < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"--threads takes INTRA,INTER as two whole numbers >= 0 (0: TF decides), got {text!r}") \
            from None
    return {"intra_op": intra, "inter_op": inter}


def resumed_plan(args: argparse.Namespace) -> tuple[ResultsFile, Plan]:
    """The results file to resume and its stored plan, with the flags that may make a retry succeed."""
    from dataclasses import replace

    from tfbench.benchmarks.results import ResultsError

    given = [f"--{name.replace('_', '-')}" for name in MEASURING_FLAGS if getattr(args, name) not in (None, False)]
    if given:
        raise UsageError(f"--resume continues the run as it was planned; {', '.join(given)} would change what it "
                         "measures: drop it, or start a new run (--data-dir, --no-verify and --threads may be given)")
    results = ResultsFile.open_to_resume(args.resume)
    try:
        plan = Plan.from_dict(results.document["config"]["plan"])
    except (ConfigError, TypeError) as error:
        raise ResultsError(f"{args.resume}: its stored plan cannot be used ({error}); start a new run instead") \
            from None
    try:  # an option the run's stored stages do not honour (--data-dir for step times only) would do nothing
        refuse_ignored(given_options(args), plan.stages, stages_option=None)
    except ConfigError as error:
        raise UsageError(f"--resume {args.resume}: {error}") from None
    changes = {"data_dir": str(args.data_dir)} if args.data_dir else {}
    if args.no_verify:
        changes["verify"] = False
    if changes:
        plan = replace(plan, **changes)
        results.document["config"]["plan"] = plan.to_dict()  # a later resume uses them too
    return results, plan


def describe_resume(results: ResultsFile) -> str:
    """What a resumed run keeps, and what it will measure again (and why those records were not final)."""
    retry = results.retry()
    kept = len(results.records) - len(retry)
    line = f"resuming {results.path}: keeping {kept} finished record(s)"
    if retry:
        by_status = {status: [r for r in retry if r["status"] == status] for status in ("skipped", "failed")}
        counts = " and ".join(f"{len(rs)} {status}" for status, rs in by_status.items() if rs)
        reasons = "; ".join(dict.fromkeys(f"{r['status']}: {r['reason']}" for r in retry))
        line += f", measuring again {counts} ({reasons[:300]})"
    return line + ", then whatever was never measured"


def main(args: argparse.Namespace) -> int:
    from tfbench.benchmarks.outputs import WriterLock, check_dir, check_file, writing
    from tfbench.benchmarks.suite import execute, new_run_id

    # Every output is checked before anything is measured (and before TensorFlow is imported).
    plan, run_id = (None, None) if args.resume else (make_plan(args), new_run_id())
    if plan is not None and plan.strategy == "multiworker":
        from tfbench.benchmarks.multiworker import other_worker, run_plan

        if other_worker():  # one worker of a cluster that is not the chief: it measures, the chief writes
            run_plan(plan, threads=parse_threads(args.threads, PROFILES[plan.profile]), device=args.device or "auto",
                     output=None, timeout_s=args.worker_timeout or DEFAULT_TIMEOUT_S)
            print("worker done; the chief writes the results file")
            return 0
    path = check_file(args.resume or args.output or (args.out or Path("results")) / f"results-{run_id}.json",
                      "the results file")
    if args.report:
        check_dir(args.report, "the report")

    def refuse_to_replace() -> None:
        if not args.resume and path.exists() and not args.overwrite:
            raise UsageError(f"{path} already exists; `--resume {path}` continues it, --overwrite replaces it, "
                             "or give another --output")

    refuse_to_replace()
    log = RunProgress(quiet=args.quiet)
    with WriterLock(path):  # a second run given the same file is refused, not interleaved with this one
        refuse_to_replace()  # again: another run may have finished writing it a moment ago
        resume = None
        if args.resume:  # read under the lock: what the file holds now, and nobody else adds to it
            resume, plan = resumed_plan(args)
            if plan.strategy == "multiworker":  # its workers measured in lockstep: a part cannot be redone alone
                raise UsageError(f"{path} is a multiworker run, which cannot be resumed; start it again")
            threads = parse_threads(args.threads, PROFILES.get(plan.profile, PROFILES["quick"]),
                                    recorded=resume.document["environment"].get("threads"))
            progress()(describe_resume(resume))  # said even with --quiet: what the resumed run will do
        else:
            threads = parse_threads(args.threads, PROFILES[plan.profile])
        if args.require_accuracy:
            from tfbench.implementations.datasets import load

            for name in required_datasets(plan):
                load(name, data_dir=plan.data_dir, verify=plan.verify)  # a DatasetError: one line and exit 2
        starting_tensorflow(log)
        try:
            if plan.strategy == "multiworker" and resume is None:  # local workers, or this one of a cluster
                from tfbench.benchmarks.multiworker import run_plan

                results = run_plan(plan, threads=threads, device=args.device or "auto", output=path,
                                   timeout_s=args.worker_timeout or DEFAULT_TIMEOUT_S)
            else:
                results = execute(plan, threads=threads, device=args.device or "auto", output=path,
                                  resume=resume, log=log, run_id=run_id, progress=log)
        except KeyboardInterrupt as interrupt:
            if path.is_file():  # what was measured is in the file: say so, and how to finish the run
                interrupt.args = (f"the records measured so far are in {path}; `tfbench run --resume {path}` "
                                  "completes the run",)
            raise
    if not args.quiet:
        print_summary(results.records)
    skipped = [r for r in results.records if r["status"] == "skipped"]
    if skipped:
        print(f"\n!!! {len(skipped)} record(s) SKIPPED: {skipped[0]['reason']}", file=sys.stderr)
    failed = [r for r in results.records if r["status"] == "failed"]
    if failed:
        print(f"\n!!! {len(failed)} record(s) FAILED, e.g. {failed[0]['id']}: {failed[0]['reason']}", file=sys.stderr)
    if args.report:
        from tfbench.reports import write_report

        with writing(args.report, "the report to", then=f"the results are in {results.path}"):
            report = write_report([results.path], args.report)
    if not args.quiet:
        print_answer(results.path)
        if args.report:
            print(f"report: {report}")
        print(f"results: {results.path}")
    return EXIT_FAILED if failed else 0


def print_answer(path: Path) -> None:
    """The report's one-screen answer (:mod:`tfbench.reports.terminal`), for the terminal."""
    from tfbench.reports.data import load_results
    from tfbench.reports.terminal import answer

    print()
    print(answer(load_results([path])))


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
                         f"{speedup:.2f}x" if speedup else "",
                         f"{100 * m['fraction_of_floor']:.1f}%" if "fraction_of_floor" in m else "",
                         (f"{100 * m['mfu']:.1f}%" if "mfu" in m else "") + ("  noisy" if m.get("noisy") else "")])
    if rows:
        print(tabulate(rows, headers=["workload", "batch", "device", "approach", "mode", "K", "ms/step",
                                      "samples/s", "vs eager", "of floor", "MFU"]))
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

