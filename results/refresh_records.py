"""Bring committed run records up to three changes without recomputing them.

    python results/refresh_records.py results/paper_zoo

1. Error bounds: each run's ``bound_lo/hi`` columns and ``bound_coverage/width`` are selected
   anew by :func:`harness.diagnostics.select_bound` for the bound its method now declares
   (:meth:`harness.methods.base.Method.error_bound`, from the record's own method config):
   ``hvp`` (exact mode) gets the HVP interval the record already holds (``hvp_bound_*``)
   instead of NaN. Nothing is recomputed: both intervals were computed and recorded in every run.
2. Method identity: a run made with a variant config ``fast/<slug>`` (same options as the
   ``<slug>_fast`` config that replaces it) is named ``<slug>_fast``: ``method`` in summary.json
   and estimates.parquet, ``config.method.name``, ``config_hash`` (:func:`harness.job.config_hash`
   of the renamed config), the Hydra files of the job and the job folder's name.

3. The HVP interval's half-width is |f'(1) - f'(0) - f''(0)| / 3
   (:func:`harness.diagnostics.hvp_spread`, issue 12; it was |f''(1) - f''(0)| / 6). A record
   holds the three numbers it needs: the AtP interval's ends are f'(0) and f'(1), the HVP
   interval's centre is f'(0) + f''(0) / 2, so f'(1) - f'(0) - f''(0) = (atp_bound_lo +
   atp_bound_hi) - (hvp_bound_lo + hvp_bound_hi) whichever end f'(0) is. ``hvp_bound_lo/hi``
   and ``hvp_bound_coverage/width`` are recomputed from them and the record's truth, once: the
   summary then names the formulas (``atp_bound_formula``, ``hvp_bound_formula``), as a new
   run's does.

Files are rewritten with the harness's own writers (:mod:`harness.storage`). Re-running it
changes nothing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.diagnostics import BOUND_FORMULAS, bound_quality, select_bound
from harness.job import config_hash
from harness.methods.base import make_method
from harness.storage import atomic_write_json, atomic_write_parquet


def variant_slug(run_dir: Path) -> str | None:
    """The new slug of a run made with ``method=fast/<slug>`` (None for any other run)."""
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text().splitlines()
    for line in overrides:
        if line.startswith("- method=fast/"):
            return line.removeprefix("- method=fast/") + "_fast"
    return None


def hvp_interval(columns: dict[str, np.ndarray], summary: dict) -> None:
    """The HVP interval of the recorded f'(0), f''(0), f'(1) (module docstring, 3), in place."""
    centre = (columns["hvp_bound_lo"] + columns["hvp_bound_hi"]) / 2
    ends = columns["atp_bound_lo"] + columns["atp_bound_hi"]  # f'(0) + f'(1)
    spread = np.abs(ends - 2 * centre) / 3
    columns["hvp_bound_lo"], columns["hvp_bound_hi"] = centre - spread, centre + spread
    quality = bound_quality(columns["hvp_bound_lo"], columns["hvp_bound_hi"], columns["truth"])
    summary["hvp_bound_coverage"] = quality["coverage"]
    summary["hvp_bound_width"] = quality["width"]


def refresh(run_dir: Path) -> Path:
    """Refresh one run folder; returns its (possibly renamed) path."""
    summary = json.loads((run_dir / "summary.json").read_text())
    frame = pd.read_parquet(run_dir / "estimates.parquet")
    slug = variant_slug(run_dir)
    if slug is not None:
        old = summary["method"]
        summary["method"] = summary["config"]["method"]["name"] = slug
        summary["config_hash"] = config_hash(summary["config"])
        frame["method"] = slug
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            path = run_dir / ".hydra" / name
            text = re.sub(r"\bfast/(\w+)", r"\1_fast", path.read_text())  # every variant named
            text = re.sub(rf"\b{re.escape(run_dir.name)}\b", f"{run_dir.name}_fast", text)
            if name == "config.yaml":
                text = re.sub(rf"(?m)^(  name: ){re.escape(old)}$", rf"\g<1>{slug}", text)
            path.write_text(text)
    method = make_method(summary["config"]["method"])
    if "unreliable" in frame:  # a run with diagnostics
        columns = {name: frame[name].to_numpy() for name in frame.columns}
        if summary.get("hvp_bound_formula") != BOUND_FORMULAS["hvp"]:
            hvp_interval(columns, summary)
            frame["hvp_bound_lo"] = columns["hvp_bound_lo"]
            frame["hvp_bound_hi"] = columns["hvp_bound_hi"]
        summary.update({f"{k}_bound_formula": v for k, v in BOUND_FORMULAS.items()})
        select_bound(columns, summary, method.error_bound())
        frame["bound_lo"], frame["bound_hi"] = columns["bound_lo"], columns["bound_hi"]
    atomic_write_parquet(run_dir / "estimates.parquet", frame)
    atomic_write_json(run_dir / "summary.json", summary)
    if slug is not None:
        target = run_dir.with_name(f"{run_dir.name}_fast")
        run_dir.rename(target)
        return target
    return run_dir


def main(root: str) -> None:
    runs = sorted(p.parent for p in Path(root).rglob("summary.json") if "report" not in p.parts)
    renamed = sum(refresh(run) != run for run in runs)
    # the sweep's own record of its choices, in its folder and in each job's Hydra files
    for sweep in [*Path(root).rglob("multirun.yaml"), *Path(root).rglob(".hydra/hydra.yaml")]:
        sweep.write_text(re.sub(r"\bfast/(\w+)", r"\1_fast", sweep.read_text()))
    print(f"{len(runs)} runs refreshed, {renamed} renamed")


if __name__ == "__main__":
    main(sys.argv[1])
