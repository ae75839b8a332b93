"""The regression gate: ``tfbench compare`` (two results files, a statistical decision), ``tfbench ab`` (two
revisions of the suite measured in one job) and ``tfbench calibrate-gate`` (how often the gate cries wolf and
how often it catches a planted slowdown)."""
