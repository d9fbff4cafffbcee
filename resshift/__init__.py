"""resshift-bench: a benchmark and evaluation suite for diffusion-based x4 super-resolution.

The package holds a reference ResShift (networks, diffusion chain, sampler), the baselines it is
compared with, the data sets and degradations, the metric registry, the evaluation runner and the
report writers.
"""

__version__ = "0.1.0"
