"""The software and machine behind a run's numbers, recorded in every ``summary.json``.

Attribution numbers depend on library versions (kernels, attention implementations, float
order), so each record names them; ``harness-report`` groups and warns by them
(:data:`VERSION_KEYS`).
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import torch

import harness

PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "transformer_lens": "transformer-lens",
    "captum": "captum",
}
"""Record key -> distribution name of each library whose version is recorded."""

VERSION_KEYS = ("python", *PACKAGES, "harness")
"""The keys of :func:`environment` that are versions: a table that mixes any of them mixes
software."""


def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None where it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def device_name(device: str) -> str:
    """A readable name of the device a run used: the GPU's name, or the CPU's."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine() or "cpu"


def environment(device: str) -> dict[str, Any]:
    """Versions of python, the libraries of :data:`PACKAGES` and the harness, the device's
    name and the number of CPU threads torch uses."""
    return {
        "python": platform.python_version(),
        **{key: package_version(dist) for key, dist in PACKAGES.items()},
        "harness": harness.__version__,
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
    }
