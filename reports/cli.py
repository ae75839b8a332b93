"""``tfbench report RESULTS... [--out DIR]``: write REPORT.md and its charts from results files."""

from __future__ import annotations

import argparse
from pathlib import Path

from tfbench.reports.report import write_report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", type=Path,
                        help="results JSON files, or directories (all *.json in them); several machines merge")
    parser.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR",
                        help="where to write REPORT.md and the PNG charts (default: reports/)")


def main(args: argparse.Namespace) -> int:
    from tfbench.benchmarks.outputs import check_dir, writing

    with writing(check_dir(args.out, "the report"), "the report to"):  # a write error is one line, exit 2
        print(write_report(args.results, args.out))
    return 0
