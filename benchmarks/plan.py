"""What a run measures: named profiles, and the plan a profile becomes once the user's filters are applied.

Both are frozen dataclasses checked in ``__post_init__``: a bad value fails there, before TensorFlow is
imported, with a message that names the value and the fix. The CLI (:mod:`tfbench.benchmarks.runner`) and
the Python API (:func:`tfbench.run`) build plans the same way, through :func:`build_plan`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from tfbench.benchmarks.devices import DEVICE_CHOICES
from tfbench.benchmarks.stages import STAGES
from tfbench.errors import ConfigError
from tfbench.implementations import approach_names
from tfbench.implementations.distribute import STRATEGIES
from tfbench.implementations.interface import MODES
from tfbench.implementations.workloads import WORKLOADS

DATASET_CHOICES = ("mnist", "fashion_mnist", "synthetic")
STAGE_NAMES = tuple(STAGES)
BACKENDS = ("tensorflow", "jax")
# Stages the quick profile leaves out unless named with --stages: the K sweep and mixed precision (minutes;
# docs/diagnostics-k-precision.md) and the peer stage (~6 min on 2 cores, a JAX process of its own).
FULL_ONLY_STAGES = ("k_sweep", "mixed_precision", "peer")
QUICK_STAGES = tuple(name for name in STAGE_NAMES if name not in FULL_ONLY_STAGES)


def _check_names(what: str, values, choices) -> None:
    for value in values:
        if value not in choices:
            raise ConfigError(f"unknown {what} {value!r}; choose from: {', '.join(map(str, choices))}")


def _check_positive(what: str, values) -> None:
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{what} must be whole numbers >= 1, got {value!r}")


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
    stages: tuple[str, ...] = STAGE_NAMES
    accuracy_epochs: int = 3
    accuracy_batch_size: int = 128
    recipe_epochs: int | None = 3  # None: each recipe's documented epochs
    # Epochs of each tutorial's loop as published (eager, with its extra work per step); None: as published.
    as_published_epochs: int | None = 1
    pipeline_batch_size: int = 128
    # Time a fixed NumPy kernel interleaved with each step-time group, for the regression gate.
    reference: bool = False
    roofline: bool = True  # measure the matmul peak (2-3 s) for roofline fractions
    # Time what the harness's own bookkeeping adds to a sample (about 1 s a group; the report shows it). The gate
    # profiles leave it out: both sides pay the same harness, and a gate's rounds must fit in 10 minutes.
    overhead_check: bool = True
    # Threads per op (the intra-op pool); None: as many as cores. The inter-op pool always has one
    # thread per core. See docs/performance.md, section 1.
    intra_op: int | None = None
    # Time all approaches of one workload and batch size in one interleaved group (True), so that
    # "approach A is x% slower than B" is measured on the same machine state; or one group per
    # approach (False), the grouping the gate was calibrated under.
    interleave_approaches: bool = True
    # The K sweep (stage k_sweep): K = 1, 2, 4, ... up to this.
    k_sweep_max: int = 16
    # Epochs of each precision's training to accuracy (stage mixed_precision); None: accuracy_epochs.
    precision_epochs: int | None = 1
    # Seconds of benchmarking the whole run should take (benchmarks/budget.py, docs/budget.md); None: the fixed
    # sampling above, the profile's epochs as they are.
    budget_s: float | None = None
    # Approaches timed in eager mode (None: all of the profile's); the gate times one, eager being slow.
    eager_approaches: tuple[str, ...] | None = None


# The quick profile's default budget: 5 minutes of benchmarking on 2 cores.
QUICK_BUDGET_S = 300.0

PROFILES = {
    "quick": Profile("quick", "every approach x workload x mode at batch 128, K 1 and 16; 3 epochs of MNIST "
                              "each; recipes capped at 3 epochs, the tutorials' loops as published at 1; "
                              "the K sweep (to K=16), mixed precision (1 epoch) and the peer stage only when named; "
                              f"sized to a {QUICK_BUDGET_S:.0f} s budget (--budget)",
                    stages=QUICK_STAGES, budget_s=QUICK_BUDGET_S),
    "full": Profile("full", "batch sizes 32/128/256/1024, K 1, 16 and 64, more samples, 10 epochs of MNIST, "
                            "recipes and the tutorials' loops as published to their documented epochs; the K sweep "
                            "to K=64 and mixed precision (2 epochs of accuracy)",
                    batch_sizes=(32, 128, 256, 1024), steps_per_call=(1, 16, 64), rounds=10, round_budget_s=0.15,
                    warmup=5, accuracy_epochs=10, recipe_epochs=None, as_published_epochs=None,
                    k_sweep_max=64, precision_epochs=2),
    # The regression gate (docs/gate-coverage.md). "gate", the default of `tfbench ab` and `tox -e regress`:
    # every approach on both workloads in function and xla, and custom_tape in eager, each record's own group,
    # 0.4 s of sampling per record: with 0.12 s a record's duet pairs scattered by 5-30% on a contended day
    # (reports/calibration/gate-0.12s.md), too much for a 10% slowdown in one record; more sampling costs about
    # 6 s a duet round, and 13 rounds must stay within 10 minutes.
    "gate": Profile("gate", "the regression gate (pull requests): every approach x mlp, cnn x function, xla, "
                            "plus custom_tape eager; K=1, batch 128, step time and the results check",
                    workloads=("mlp", "cnn"), modes=("eager", "function", "xla"), steps_per_call=(1,),
                    rounds=4, round_budget_s=0.1, warmup=5, stages=("step_time",),
                    # One thread per op: the setting the gate was calibrated under (docs/gate.md).
                    reference=True, roofline=False, overhead_check=False, intra_op=1, interleave_approaches=False,
                    eager_approaches=("custom_tape",)),
    # Nightly: every mode of every approach, K 1 and 16, more samples per process.
    "gate-wide": Profile("gate-wide", "the nightly regression gate: every approach x mlp, cnn x eager, function, "
                                      "xla, K 1 and 16, batch 128, step time and the results check",
                         workloads=("mlp", "cnn"), steps_per_call=(1, 16), rounds=4, round_budget_s=0.06, warmup=5,
                         stages=("step_time",), reference=True, roofline=False, overhead_check=False, intra_op=1,
                         interleave_approaches=False),
    # The gate of before issue 21: two records, kept to compare with its calibration (docs/gate.md).
    "gate-mini": Profile("gate-mini", "the former gate: custom_tape and keras_fit on mlp, function, K=1, batch 128",
                         approaches=("custom_tape", "keras_fit"), workloads=("mlp",), modes=("function",),
                         steps_per_call=(1,), rounds=5, round_budget_s=0.3, warmup=10, stages=("step_time",),
                         reference=True, roofline=False, overhead_check=False, intra_op=1, interleave_approaches=False),
}

_SEQUENCES = ("approaches", "workloads", "modes", "batch_sizes", "steps_per_call", "devices", "stages", "replicas",
              "backends")
# A CPU split into more logical devices than this measures thread contention, not a strategy.
MAX_LOGICAL_CPUS = 8
# Timed samples per configuration under multiworker when --samples is not given: every worker must make the
# same calls (each all-reduce waits for all), so the count cannot follow each worker's own clock.
MULTIWORKER_SAMPLES = 20


@dataclass(frozen=True)
class Plan:
    """What a run measures: the profile with the user's filters applied. Stored in the results file, so that
    ``--resume`` continues exactly this plan."""

    profile: str
    approaches: tuple[str, ...]
    workloads: tuple[str, ...]
    modes: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    steps_per_call: tuple[int, ...]
    devices: tuple[str, ...] = ()  # filled in once the devices are detected
    stages: tuple[str, ...] = STAGE_NAMES
    dataset: str = "mnist"
    data_dir: str | None = None
    rounds: int = 5
    round_budget_s: float = 0.08
    warmup: int = 3
    samples: int | None = None
    accuracy_epochs: int = 3
    accuracy_batch_size: int = 128
    recipe_epochs: int | None = 3
    as_published_epochs: int | None = 1
    pipeline_batch_size: int = 128
    inject_slowdown: float = 0.0
    # The one record the slowdown goes into, "APPROACH/WORKLOAD/MODE" (None: every record); gate calibration.
    inject_into: str | None = None
    # Approaches timed in eager mode (None: every approach of the plan).
    eager_approaches: tuple[str, ...] | None = None
    reference: bool = False
    roofline: bool = True
    overhead_check: bool = True
    interleave_approaches: bool = True
    seed: int = 0
    verify: bool = True  # check the dataset files' checksums (False: --no-verify)
    # tf.distribute (the ``distributed`` stage): the strategy and the replica counts it is measured at.
    strategy: str = "none"
    replicas: tuple[int, ...] = (1,)
    k_sweep_max: int = 16
    precision_epochs: int | None = 1
    # The frameworks the peer stage measures: tensorflow (its best styles), jax (Keras 3 on JAX, plain JAX).
    backends: tuple[str, ...] = BACKENDS
    budget_s: float | None = None  # seconds of benchmarking (benchmarks/budget.py); None: fixed sampling

    def __post_init__(self) -> None:
        for name in _SEQUENCES:  # a plan read back from JSON has lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_names("profile", [self.profile], list(PROFILES))
        _check_names("approach", self.approaches, approach_names())
        _check_names("workload", self.workloads, list(WORKLOADS))
        _check_names("mode", self.modes, MODES)
        _check_names("stage", self.stages, STAGE_NAMES)
        _check_names("dataset", [self.dataset], DATASET_CHOICES)
        _check_names("backend", self.backends, BACKENDS)
        if not self.backends:
            raise ConfigError("a plan needs at least one backend (tensorflow, jax)")
        _check_positive("batch sizes", self.batch_sizes)
        _check_positive("steps per call", self.steps_per_call)
        _check_positive("rounds, warm-up steps and epochs",
                        [self.rounds, self.accuracy_epochs, self.accuracy_batch_size, self.pipeline_batch_size]
                        + [n for n in (self.samples, self.recipe_epochs, self.as_published_epochs,
                                       self.precision_epochs) if n is not None] + [self.k_sweep_max])
        if not (self.approaches and self.workloads and self.modes and self.batch_sizes and self.steps_per_call):
            raise ConfigError("a plan needs at least one approach, workload, mode, batch size and K")
        if self.budget_s is not None and (isinstance(self.budget_s, bool) or not self.budget_s > 0):
            raise ConfigError(f"the budget must be a number of seconds > 0, got {self.budget_s!r}")
        if self.budget_s is not None and self.profile.startswith("gate"):
            raise ConfigError("the gate profile keeps its calibrated fixed sampling: drop --budget, or use the "
                              "quick or full profile")
        if not 0 <= self.inject_slowdown < 10:
            raise ConfigError(f"the injected slowdown must be a fraction in [0, 10), got {self.inject_slowdown}")
        if self.eager_approaches is not None:
            object.__setattr__(self, "eager_approaches", tuple(self.eager_approaches))
        if self.inject_into is not None:
            parts = self.inject_into.split("/")
            if len(parts) != 3:
                raise ConfigError(f"--inject-into takes APPROACH/WORKLOAD/MODE (e.g. custom_tape/mlp/function), "
                                  f"got {self.inject_into!r}")
            for what, value, choices in zip(("approach", "workload", "mode"), parts,
                                            (approach_names(), list(WORKLOADS), MODES)):
                _check_names(what, [value], choices)
        self._check_distribution()

    def _check_distribution(self) -> None:
        _check_names("strategy", [self.strategy], STRATEGIES)
        _check_positive("replicas", self.replicas)
        if self.strategy == "none" and self.replicas != (1,):
            raise ConfigError(f"replicas {list(self.replicas)} need a strategy: add --strategy mirrored or multiworker")
        if self.strategy == "mirrored" and max(self.replicas) > MAX_LOGICAL_CPUS:
            raise ConfigError(f"{max(self.replicas)} replicas are more than this suite runs on one machine "
                              f"({MAX_LOGICAL_CPUS}: GPUs, or a CPU split into logical devices)")
        if self.strategy == "multiworker":
            if len(self.replicas) != 1:
                raise ConfigError(f"a multiworker run has one replica count, the cluster's; got {list(self.replicas)}")
            if self.samples is None:
                raise ConfigError("a multiworker plan needs a fixed sample count (every worker makes the same calls)")

    @classmethod
    def from_dict(cls, stored: dict) -> Plan:
        """A stored plan; fields an older or newer version wrote that this one does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in known})

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def with_devices(self, names) -> Plan:
        return replace(self, devices=tuple(names))


def build_plan(profile: str = "quick", *, approaches=None, workloads=None, modes=None, batch_sizes=None,
               steps_per_call=None, stages=None, dataset: str = "mnist", data_dir: str | None = None,
               samples: int | None = None, inject_slowdown: float = 0.0, seed: int = 0, verify: bool = True,
               strategy: str = "none", replicas=None, backends=None, budget_s: float | None = None,
               inject_into: str | None = None) -> Plan:
    """The plan of ``profile`` narrowed by the given filters (None keeps the profile's choice).

    A strategy other than ``none`` measures the ``distributed`` stage only, unless ``stages`` says otherwise;
    under ``mirrored`` the replica counts always include 1, the baseline of the scaling efficiency (default
    1, 2 and 4). ``budget_s`` replaces the profile's budget (the quick profile's 300 s; none for the others).
    """
    _check_names("profile", [profile], list(PROFILES))
    chosen = PROFILES[profile]
    if strategy == "mirrored":
        replicas = tuple(sorted({1, *(replicas or (2, 4))}))
    elif strategy == "multiworker":
        replicas = tuple(replicas or ())
        samples = samples or MULTIWORKER_SAMPLES
    else:
        replicas = tuple(replicas or (1,))
    stages = run_stages(chosen.name, stages, strategy)
    return Plan(
        profile=chosen.name,
        approaches=tuple(approaches or chosen.approaches or approach_names()),
        workloads=tuple(workloads or chosen.workloads),
        modes=tuple(modes or chosen.modes),
        batch_sizes=tuple(batch_sizes or chosen.batch_sizes),
        steps_per_call=tuple(sorted(set(steps_per_call or chosen.steps_per_call))),
        stages=stages,
        dataset=dataset, data_dir=None if data_dir is None else str(data_dir), rounds=chosen.rounds,
        round_budget_s=chosen.round_budget_s, warmup=chosen.warmup, samples=samples,
        accuracy_epochs=chosen.accuracy_epochs, accuracy_batch_size=chosen.accuracy_batch_size,
        recipe_epochs=chosen.recipe_epochs, as_published_epochs=chosen.as_published_epochs,
        pipeline_batch_size=chosen.pipeline_batch_size,
        inject_slowdown=inject_slowdown, inject_into=inject_into,
        # The profile's choice of eager approaches holds unless the user names the approaches or modes.
        eager_approaches=None if approaches or modes else chosen.eager_approaches,
        reference=chosen.reference, roofline=chosen.roofline, overhead_check=chosen.overhead_check,
        interleave_approaches=chosen.interleave_approaches, seed=seed, verify=verify, strategy=strategy,
        replicas=replicas, k_sweep_max=chosen.k_sweep_max, precision_epochs=chosen.precision_epochs,
        backends=tuple(backends or BACKENDS), budget_s=chosen.budget_s if budget_s is None else float(budget_s),
    )


# --- options a run honours ------------------------------------------------------------------------------------

# The `tfbench run` options (argparse dest names) that every run honours, whatever its stages: the profile (its
# sampling, epochs and default stages), the devices, the seed and the thread pools shape every stage's records;
# the others choose the stages, where the results go and what is printed. What a stage honours beyond these is
# its own ``FLAGS`` (stages/base.py).
COMMON_FLAGS = ("profile", "stages", "device", "seed", "threads", "out", "output", "overwrite", "resume", "report",
                "quiet")


def run_stages(profile: str, stages=None, strategy: str = "none") -> tuple[str, ...]:
    """The stages a run measures, as :func:`build_plan` chooses them: ``stages`` if given, else the distributed
    stage under a strategy, else the profile's."""
    _check_names("profile", [profile], list(PROFILES))
    if stages:
        _check_names("stage", stages, STAGE_NAMES)
        return tuple(stages)
    return ("distributed",) if strategy != "none" else PROFILES[profile].stages


def honouring(flag: str) -> tuple[str, ...]:
    """The stages that honour the ``tfbench run`` option ``flag`` (a dest name): all of them for a common one."""
    if flag in COMMON_FLAGS:
        return STAGE_NAMES
    return tuple(name for name, stage in STAGES.items() if flag in stage.FLAGS)


def option_name(flag: str) -> str:
    """How the command line spells a dest name: ``batch_size`` -> ``--batch-size``."""
    return "--" + flag.replace("_", "-")


def refuse_ignored(given, stages, *, spell=option_name, stages_option: str | None = "--stages") -> None:
    """Raise :class:`ConfigError` if an option in ``given`` (dest names of what the user gave) is honoured by
    no stage in ``stages``: the run would record settings it did not use. One line, naming for each such option
    the stages that would honour it; ``spell`` names an option as the user wrote it (the Python API: ``spell``
    maps to its argument names); ``stages_option`` is how to add a stage, None when the stages are fixed (a
    resumed run)."""
    ignored = [flag for flag in given if not set(honouring(flag)) & set(stages)]
    if not ignored:
        return
    groups: dict[tuple[str, ...], list[str]] = {}  # options honoured by the same stages are named together
    for flag in ignored:
        groups.setdefault(honouring(flag), []).append(spell(flag))
    clauses = []
    for where, names in groups.items():
        subject = _and(names) + (" are" if len(names) > 1 else " is")
        clauses.append(f"{subject} honoured only by the {_and(where)} stage{'s' * (len(where) > 1)}" if where
                       else f"{subject} honoured by no stage")
    dropped = _and([spell(flag) for flag in ignored])
    where = next(iter(groups)) if len(groups) == 1 else None  # the stages that would honour them all
    if stages_option is None:
        fix = f"this run's stages are {', '.join(stages)}: drop {dropped}"
    elif where is None:
        fix = f"add a stage that honours each to {stages_option}, or drop {dropped}"
    elif where:
        fix = f"add {'it' if len(where) == 1 else 'one of them'} to {stages_option} or drop {dropped}"
    else:
        fix = f"drop {dropped}"
    raise ConfigError(f"{'; '.join(clauses)}; {fix}")


def _and(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def check_device(name: str) -> str:
    """``--device`` is checked before TensorFlow is imported (which devices exist is known only after)."""
    _check_names("device", [name], DEVICE_CHOICES)
    return name
