"""Benchmark harness for attribution methods in mechanistic interpretability.

Scores cheap gradient estimates of components' causal effects (attribution patching and its
corrections) against activation patching, the ground truth.
"""

__version__ = "0.1.0"
