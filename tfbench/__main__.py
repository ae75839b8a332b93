"""``python -m tfbench``: the same command line as ``tfbench``."""

import sys

from tfbench.benchmarks.cli import main

sys.exit(main())
