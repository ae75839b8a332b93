"""``tfbench``: the one command-line entry point.

Each subcommand lives in its own module, which provides ``configure(parser)``
and ``main(args) -> int``; the module is imported only to build its parser,
and TensorFlow only when a subcommand really trains (``tfbench report`` and
``tfbench compare`` never load it).

Bad input is one readable line on stderr and exit status 2, never a traceback.
Ctrl-C (SIGINT) and SIGTERM (what ``kill``, CI runners and job schedulers send)
end a command alike: one line, exit status 130 or 143 (128 + the signal), and a
run keeps every record measured so far (``tfbench run --resume`` completes it).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from tfbench.errors import TfbenchError, UsageError

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "list": ("tfbench.benchmarks.commands",
              "list approaches x workloads x modes, with the reason for each unsupported one"),
    "train": ("tfbench.benchmarks.commands", "train one approach, or a documented recipe, and print its accuracy"),
    "run": ("tfbench.benchmarks.runner", "run the benchmark suite and write a results file"),
    "report": ("tfbench.reports.cli", "write REPORT.md and PNG charts from results files"),
    "history": ("tfbench.reports.history",
                "chart step times over many runs and list the step changes, with their commit ranges"),
    "compare": ("tfbench.benchmarks.gate.compare", "compare two results files; exit 1 on a regression"),
    "ab": ("tfbench.benchmarks.gate.ab", "A/B-compare two revisions of the suite in one job"),
    "upgrade-ab": ("tfbench.benchmarks.gate.upgrade",
                   "A/B two TensorFlow versions on the same suite code, each in its own virtual environment"),
    "calibrate-gate": ("tfbench.benchmarks.gate.calibrate",
                       "measure the regression gate's false-alarm and detection rates"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + error; we print one line with a hint
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _module(name: str):
    return importlib.import_module(SUBCOMMANDS[name][0])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="tfbench", description="Compare the ways to train networks in TensorFlow.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (_, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            configure = getattr(_module(name), f"configure_{name.replace('-', '_')}", None)
            (configure or _module(name).configure)(command)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python next runs so that it unwinds exactly as Ctrl-C does."""


def _on_sigterm(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the chosen subcommand's module: `tfbench report` must not pay for TensorFlow.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    # Python ends on SIGTERM at once, without unwinding; handled, it ends like Ctrl-C. (Only the main
    # thread may set a handler: a caller running main() in a thread keeps the default.)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        args = build_parser(chosen if chosen in SUBCOMMANDS else None).parse_args(argv)
        handler = getattr(_module(args.command), f"main_{args.command.replace('-', '_')}", None)
        return int((handler or _module(args.command).main)(args) or 0)
    except TfbenchError as error:
        message = error.args[0] if error.args else str(error)
        print(f"tfbench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        detail = f": {interrupt.args[0]}" if interrupt.args else ""  # e.g. what a run kept, and how to resume
        print(f"tfbench: interrupted ({'SIGTERM' if terminated else 'SIGINT'}){detail}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if in_main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
