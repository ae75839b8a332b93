"""The harness: timing, devices, results files, the run's stages, the CLI and the regression gate.

Imported as ``tfbench.benchmarks``. Nothing here is imported by ``tfbench.reports``: data flows
run -> results file -> report.
"""
