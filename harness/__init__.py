"""Benchmark harness for attribution methods in mechanistic interpretability.

Scores cheap gradient estimates of components' causal effects (attribution patching and its
corrections) against activation patching, the ground truth.
"""

__version__ = "0.1.0"

COMPUTATION_VERSION = 3
"""The version of the computation behind every stored number (ground truth, diagnostics,
estimates, scores). It is part of the ground-truth cache key (and so of the diagnostics cache
key) and of every resume record: bump it whenever a change to the maths, the patching engine or
a task generator can change a stored number, and old caches and results are recomputed instead
of reused. 2: prompts in chunks of batch_size; 3: model fingerprints hash every file in full."""
