"""``harness-report DIR``: gather every run record below DIR into tables and figures.

Reads each run directory's ``summary.json`` and ``estimates.parquet`` (the source of truth;
nothing is recomputed) after checking them against the SHA-256s in its ``files.json`` (as
resume does), skips failed, partial, edited or damaged runs and second copies of a ``run_id``
with a warning, counts runs without ``files.json`` (older records) as unverified, and writes
under ``DIR/report/`` (or ``--out``; nothing is written when no run is complete):

- ``results.parquet``: one row per run, the flat summary (metrics, cost, identifiers), the
  environment's versions (``env_python``, ``env_torch``, ...) plus ``run_dir`` (relative to
  DIR);
- ``tables.md`` and ``tables.tex``: one table per task, rows = model x method (plus any setting
  that varies between runs of the same model and method: metric, direction, sites, positions,
  dtype), columns = Spearman, relative error, top-k recall, CPR / CMD (when the runs report them),
  flag precision / recall, bound coverage and cost; repeated runs (seeds) are averaged and
  counted in ``runs``; under each, the rows' environment (library versions, device), with a
  warning (also on stderr) when one table mixes versions of
  :data:`harness.environment.VERSION_KEYS`;
  then one table per task of the reliability scores: rows model x score,
  the tier that computes the score, its AUROC and average precision against both labels
  (``unreliable``, ``unreliable_rel``), each AUROC beside that of |AtP| itself;
- ``figures/*.png`` and ``*.pdf``: estimate vs truth per method, error vs cost (Pareto front),
  error per layer and site, and the reliability scores' precision-recall curve.

Also runnable as ``python -m harness.report DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.environment import VERSION_KEYS

ID_COLUMNS = ("model", "task", "method")
# Settings that make two runs of one (model, task, method) different rows, when they vary.
SETTING_COLUMNS = (
    "metric",
    "direction",
    "sites",
    "positions",
    "dtype",
    "n_prompts",
    "diagnostics_tier",
)
# (summary key, table header, format): the table's columns, in order.
TABLE_COLUMNS = (
    ("clean_accuracy", "clean acc.", "{:.2f}"),  # the model's own accuracy on the task
    # 0: accuracy not above chance, the row measures noise; missing: too few prompts to tell
    ("task_solved", "solved", "{:.2f}"),
    ("spearman", "Spearman", "{:.3f}"),
    ("spearman_ci_lo", "Spearman CI lo", "{:.3f}"),
    ("spearman_ci_hi", "Spearman CI hi", "{:.3f}"),
    ("spearman_ci_width", "Spearman CI width", "{:.3f}"),
    ("n_truth", "truth n", "{:.0f}"),
    ("mae", "MAE", "{:.3g}"),
    ("rel_error", "rel. error", "{:.3f}"),
    ("topk_recall", "top-k recall", "{:.3f}"),
    ("cpr", "CPR", "{:.3f}"),
    ("cmd", "CMD", "{:.3f}"),
    ("flag_precision", "flag precision", "{:.3f}"),
    ("flag_recall", "flag recall", "{:.3f}"),
    ("bound_coverage", "bound coverage", "{:.3f}"),
    ("wall_s", "wall s", "{:.3g}"),
    ("fwd_equiv", "fwd equiv", "{:.3g}"),
    ("n_forward", "forward", "{:.0f}"),
    ("n_backward", "backward", "{:.0f}"),
    ("n_hvp", "HVP", "{:.0f}"),
)
# Summary fields the tables and figures compute with: a run whose field has another type is
# skipped with a warning (a hand-edited or foreign summary.json), not a traceback.
BOOL_FIELDS = ("task_solved",)
NUMBER_FIELDS = tuple(k for k, _, _ in TABLE_COLUMNS if k not in BOOL_FIELDS) + (
    "rmse",
    "max_abs_error",
    "kendall",
    "sign_agreement",
    "forward_s",
    "seed",
)
TEXT_FIELDS = ID_COLUMNS + ("metric", "direction", "dtype", "positions", "diagnostics_tier")
# (column, header, summary key with {score}): the reliability table's columns, in order; the
# abs_atp columns repeat the AUROC of |AtP| itself on every row.
RELIABILITY_COLUMNS = (
    ("auroc", "AUROC", "flag_auroc_{score}"),
    ("auroc_abs_atp", "abs_atp AUROC", "flag_auroc_abs_atp"),
    ("ap", "AP", "flag_ap_{score}"),
    ("auroc_rel", "AUROC rel", "flag_auroc_{score}_rel"),
    ("auroc_abs_atp_rel", "abs_atp AUROC rel", "flag_auroc_abs_atp_rel"),
    ("ap_rel", "AP rel", "flag_ap_{score}_rel"),
)
SKIP_DIRS = {"report", "wandb", "cache", "index", ".hydra", ".submitit", "__pycache__"}
FIGURES = ("estimate_vs_truth", "error_vs_cost", "error_by_layer_site", "reliability_pr")
# summary.json's ``environment`` keys shown per row group: the versions, then the device.
ENVIRONMENT_KEYS = (*VERSION_KEYS, "device_name")
ENV_PREFIX = "env_"
UNKNOWN = "unknown"  # a record without ``environment`` (written before it was recorded)
NOT_INSTALLED = "not installed"  # ``environment`` names the library with a null version


@dataclass
class Collected:
    """The runs found below a directory: one summary row per run, all estimates, and why any
    run directory was skipped."""

    results: pd.DataFrame
    estimates: pd.DataFrame
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    unverified: list[Path] = field(default_factory=list)
    """Run directories without ``files.json`` (older records): read, but not checked."""


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame, bool]:
    """A run directory's ``summary.json``, ``estimates.parquet`` and whether its ``files.json``
    vouched for them (False: no such record); ``ValueError`` with the reason when the run failed,
    is incomplete, or a file differs from its recorded SHA-256."""
    from harness.storage import verify_run_folder

    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    estimates_path = run_dir / "estimates.parquet"
    failure_path = run_dir / "failure.json"
    if failure_path.exists() and not summary_path.exists():
        try:
            message = json.loads(failure_path.read_text()).get("error", "no message")
        except (OSError, ValueError, AttributeError):
            message = "unreadable failure.json"
        raise ValueError(f"the job failed: {message}")
    if not summary_path.exists():
        raise ValueError(
            "no summary.json (the job failed, is unfinished, or was skipped as already done)"
        )
    if not estimates_path.exists():
        raise ValueError("summary.json without estimates.parquet (partial run)")
    superseded = run_dir / "superseded.json"  # harness.run.SUPERSEDED
    if superseded.exists():
        try:
            newer = json.loads(superseded.read_text()).get("by", "another run")
        except (OSError, ValueError, AttributeError):
            newer = "another run"
        raise ValueError(f"superseded by {newer} (the same config recomputed)")
    verified = verify_run_folder(run_dir)
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"unreadable summary.json ({err})") from None
    if not isinstance(summary, dict):
        raise ValueError("summary.json is not an object")
    if summary.get("status") == "failed" or "error" in summary:
        raise ValueError(f"the job failed: {summary.get('error', 'no message')}")
    missing = [key for key in ID_COLUMNS if key not in summary]
    if missing:
        raise ValueError(f"summary.json lacks {', '.join(missing)}")
    check_field_types(summary)
    try:
        estimates = pd.read_parquet(estimates_path)
    except Exception as err:  # pyarrow raises several types on a bad file
        raise ValueError(f"unreadable estimates.parquet ({type(err).__name__})") from None
    return summary, estimates, verified


def check_field_types(summary: dict[str, Any]) -> None:
    """``ValueError`` naming the first field of :data:`NUMBER_FIELDS` that is not a number or
    null, of :data:`BOOL_FIELDS` that is not a boolean or null, or of :data:`TEXT_FIELDS` that
    is not a string, or an ``environment`` that is not an object of strings or nulls (and an
    integer ``cpu_threads``)."""
    for key in NUMBER_FIELDS:
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(
                f"summary.json field {key!r} is {type(value).__name__} {value!r}, "
                "expected a number or null"
            )
    for key in BOOL_FIELDS:
        value = summary.get(key)
        if value is not None and not isinstance(value, bool):
            raise ValueError(
                f"summary.json field {key!r} is {type(value).__name__} {value!r}, "
                "expected true, false or null"
            )
    for key in TEXT_FIELDS:
        value = summary.get(key)
        if key in summary and not isinstance(value, str):
            raise ValueError(
                f"summary.json field {key!r} is {type(value).__name__} {value!r}, expected a string"
            )
    env = summary.get("environment")
    if env is not None and not isinstance(env, dict):
        raise ValueError(
            f"summary.json field 'environment' is {type(env).__name__} {env!r}, expected an object"
        )
    for key in ENVIRONMENT_KEYS:
        value = (env or {}).get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"summary.json field 'environment.{key}' is {type(value).__name__} {value!r}, "
                "expected a string or null"
            )


def check_formats(formats: Sequence[str]) -> None:
    """One-line ``ValueError`` for a figure format matplotlib cannot write (naming those it can)."""
    from matplotlib.backend_bases import FigureCanvasBase

    from harness.registry import unknown_choice

    supported = sorted(FigureCanvasBase.get_supported_filetypes())
    if not formats:
        raise ValueError(f"--formats names no format; accepted: {', '.join(supported)}")
    for fmt in formats:
        if fmt not in supported:
            raise ValueError(unknown_choice("figure format", fmt, supported))


def check_out_dir(out: Path) -> None:
    """One-line ``ValueError`` unless ``out`` is (or can be made) a writable folder."""
    from harness.storage import unwritable_reason

    reason = unwritable_reason(out)
    if reason is not None:
        raise ValueError(f"report folder {str(out)!r} is not a writable folder ({reason})")


def find_run_dirs(root: Path) -> list[Path]:
    """Directories below ``root`` that hold a run record or a Hydra job (``.hydra/``)."""
    found = []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        markers = {"summary.json", "estimates.parquet", "failure.json"}
        is_job = bool(markers.intersection(files)) or ".hydra" in dirs
        # A multirun's root holds multirun.yaml but is not a job itself.
        if is_job and not ("multirun.yaml" in files and "summary.json" not in files):
            found.append(here)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
    return sorted(found)


def flat_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's scalar fields (lists joined with commas, nested values dropped)."""
    row: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, list | tuple):
            row[key] = ",".join(str(v) for v in value)
        elif value is None or isinstance(value, str | int | float | bool):
            row[key] = value
    return row


def environment_columns(summary: dict[str, Any]) -> dict[str, str]:
    """``env_<key>`` for each of :data:`ENVIRONMENT_KEYS`: the summary's ``environment`` value,
    :data:`NOT_INSTALLED` where it is null, :data:`UNKNOWN` where the record has none."""
    env = summary.get("environment")
    if not isinstance(env, dict):
        return {ENV_PREFIX + key: UNKNOWN for key in ENVIRONMENT_KEYS}
    return {
        ENV_PREFIX + key: UNKNOWN if key not in env else env[key] or NOT_INSTALLED
        for key in ENVIRONMENT_KEYS
    }


def collect(root: Path) -> Collected:
    """Every complete run below ``root``, each ``run_id`` once (the first folder in path order;
    a copy is skipped with a reason naming both folders)."""
    root = Path(root)
    rows, frames, skipped, unverified = [], [], [], []
    first_dir: dict[str, Path] = {}
    for run_dir in find_run_dirs(root):
        try:
            summary, estimates, verified = read_run(run_dir)
        except ValueError as err:
            skipped.append((run_dir, str(err)))
            continue
        run_id = summary.get("run_id")
        if isinstance(run_id, str) and run_id in first_dir:
            skipped.append(
                (run_dir, f"run_id {run_id} is also in {first_dir[run_id]} (a copy): counted once")
            )
            continue
        if isinstance(run_id, str):
            first_dir[run_id] = run_dir
        if not verified:
            unverified.append(run_dir)
        row = flat_summary(summary) | environment_columns(summary)
        row["run_dir"] = str(run_dir.relative_to(root)) if run_dir != root else "."
        rows.append(row)
        estimates = estimates.copy()
        estimates["run_id"] = summary.get("run_id", row["run_dir"])
        frames.append(estimates)
    results = pd.DataFrame(rows)
    if not results.empty:
        first = [c for c in ("run_id", *ID_COLUMNS, "run_dir") if c in results]
        results = results[first + [c for c in results.columns if c not in first]]
        for key in NUMBER_FIELDS:  # null (an undefined score) in every run: NaN, not objects
            if key in results:
                results[key] = pd.to_numeric(results[key])
        results = results.sort_values(list(ID_COLUMNS) + ["run_dir"], kind="stable")
        results = results.reset_index(drop=True)
    estimates_all = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Collected(
        results=results, estimates=estimates_all, skipped=skipped, unverified=unverified
    )


# --------------------------------------------------------------------------------------------
# Tables


def varying_settings(sub: pd.DataFrame) -> list[str]:
    """The :data:`SETTING_COLUMNS` that differ between runs of one (model, method)."""
    keys = ["model", "method"]
    return [
        col
        for col in SETTING_COLUMNS
        if col in sub and sub.groupby(keys, dropna=False)[col].nunique(dropna=False).max() > 1
    ]


def row_keys(sub: pd.DataFrame) -> list[str]:
    """The columns that name one row of a task's table: model, method and each of
    :data:`SETTING_COLUMNS` that varies between runs of one model and method."""
    return ["model", "method", *varying_settings(sub)]


def table_frames(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per task: rows model x method (x varying settings), metric columns averaged
    over repeated runs; columns no run reports are left out."""
    tables: dict[str, pd.DataFrame] = {}
    if results.empty:
        return tables
    for task, sub in results.groupby("task", sort=True):
        keys = row_keys(sub)
        metrics = [k for k, _, _ in TABLE_COLUMNS if k in sub and sub[k].notna().any()]
        numeric = sub[metrics].apply(pd.to_numeric, errors="coerce")
        grouped = pd.concat([sub[keys], numeric], axis=1).groupby(keys, sort=True, dropna=False)
        table = grouped.mean()
        table["runs"] = grouped.size()
        tables[str(task)] = table.reset_index()
    return tables


def environment_frames(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per task, rows as in :func:`table_frames`, columns :data:`ENVIRONMENT_KEYS`:
    the distinct values among the row's runs, comma-separated (:data:`UNKNOWN` for records
    without an environment)."""
    frames: dict[str, pd.DataFrame] = {}
    if results.empty:
        return frames
    for task, sub in results.groupby("task", sort=True):
        keys = row_keys(sub)
        sub = sub.assign(
            **{
                ENV_PREFIX + key: sub.get(ENV_PREFIX + key, UNKNOWN).fillna(UNKNOWN).astype(str)
                for key in ENVIRONMENT_KEYS
            }
        )
        columns = [ENV_PREFIX + key for key in ENVIRONMENT_KEYS]
        frame = sub.groupby(keys, sort=True, dropna=False)[columns].agg(
            lambda values: ", ".join(sorted(set(values)))
        )
        frames[str(task)] = frame.rename(columns=lambda c: c[len(ENV_PREFIX) :]).reset_index()
    return frames


def mixed_versions(results: pd.DataFrame) -> dict[str, str]:
    """Task -> what its table mixes, e.g. ``"torch 2.12.0, 2.13.0"`` (``"; "`` between keys),
    for each task whose runs have more than one known version of a :data:`VERSION_KEYS`
    library (:data:`UNKNOWN` is not a version)."""
    mixed: dict[str, str] = {}
    if results.empty:
        return mixed
    for task, sub in results.groupby("task", sort=True):
        parts = []
        for key in VERSION_KEYS:
            column = sub.get(ENV_PREFIX + key)
            values = set() if column is None else set(column.dropna().astype(str)) - {UNKNOWN}
            if len(values) > 1:
                parts.append(f"{key} {', '.join(sorted(values))}")
        if parts:
            mixed[str(task)] = "; ".join(parts)
    return mixed


def mixed_warning(task: str, what: str) -> str:
    """The sentence that warns that ``task``'s table mixes versions (``what``: see
    :func:`mixed_versions`)."""
    return f"table {task!r} mixes versions ({what}): its rows may not be comparable"


def reliability_frames(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per task: rows model (x varying settings) x reliability score, with the tier
    that computes the score and its AUROC / average precision against both labels beside the
    AUROC of |AtP|; averaged over the runs (every method of a setting shares the diagnostics).
    Tasks whose runs report no score are left out."""
    from harness.diagnostics import SCORE_TIER, SCORES

    tables: dict[str, pd.DataFrame] = {}
    if results.empty:
        return tables
    for task, sub in results.groupby("task", sort=True):
        keys = ["model", *varying_settings(sub)]
        parts = []
        for score in SCORES:
            key = f"flag_auroc_{score}"
            if key not in sub or not sub[key].notna().any():
                continue
            part = sub.loc[sub[key].notna(), keys].copy()
            part["score"], part["tier"] = score, SCORE_TIER[score]
            for column, _, pattern in RELIABILITY_COLUMNS:
                source = pattern.format(score=score)
                values = sub.loc[part.index, source] if source in sub else math.nan
                part[column] = pd.to_numeric(values, errors="coerce")
            parts.append(part)
        if not parts:
            continue
        frame = pd.concat(parts)
        grouped = frame.groupby([*keys, "score", "tier"], sort=False, dropna=False)
        table = grouped.mean()
        table["runs"] = grouped.size()
        table = table.reset_index().sort_values(keys, kind="stable")  # scores in SCORES order
        tables[str(task)] = table.reset_index(drop=True)
    return tables


def _cell(value: Any, fmt: str, missing: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, int | float) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def _header_and_cells(table: pd.DataFrame, missing: str) -> tuple[list[str], list[list[str]]]:
    labels = {k: (label, fmt) for k, label, fmt in TABLE_COLUMNS}
    labels |= {k: (label, "{:.3f}") for k, label, _ in RELIABILITY_COLUMNS}
    labels["runs"] = ("runs", "{:.0f}")
    labels["device_name"] = ("device", "{}")
    header = [labels.get(c, (c, "{}"))[0] for c in table.columns]
    cells = [
        [_cell(row[c], labels.get(c, (c, "{}"))[1], missing) for c in table.columns]
        for _, row in table.iterrows()
    ]
    return header, cells


def markdown_table(frame: pd.DataFrame) -> str:
    """One plain Markdown table of ``frame`` (floats to 3 significant digits, '-' if missing)."""
    header = [str(c) for c in frame.columns]
    rows = [[_cell(v, "{:.3g}", "-") for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(
    tables: dict[str, pd.DataFrame],
    environments: dict[str, pd.DataFrame] | None = None,
    mixed: dict[str, str] | None = None,
    reliability: dict[str, pd.DataFrame] | None = None,
) -> str:
    """GitHub-flavoured Markdown, one section per task (no ``tabulate`` needed): the table, a
    warning where ``mixed`` (:func:`mixed_versions`) names the task, and the rows' environment
    from ``environments`` (:func:`environment_frames`); then one section per task of
    ``reliability`` (:func:`reliability_frames`)."""
    environments, mixed = environments or {}, mixed or {}
    out = ["# Attribution methods vs activation patching", ""]
    for task, table in tables.items():
        out += [f"## Task `{task}`", ""]
        if task in mixed:
            out += [f"> **Warning:** {mixed_warning(task, mixed[task])}.", ""]
        out += [*_markdown_rows(table), ""]
        if task in environments:
            out += [f"Environment of the runs of `{task}`:", ""]
            out += [*_markdown_rows(environments[task]), ""]
    out.append(_legend())
    for task, table in (reliability or {}).items():
        out += ["", f"## Reliability scores, task `{task}`", "", *_markdown_rows(table)]
    if reliability:
        out += ["", _reliability_legend()]
    return "\n".join(out) + "\n"


def _markdown_rows(table: pd.DataFrame) -> list[str]:
    """The lines of one Markdown table, numbers right-aligned."""
    header, cells = _header_and_cells(table, missing="-")
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    rule = [
        ("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric, strict=True)
    ]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    out.append("| " + " | ".join(rule) + " |")
    for row in cells:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        out.append("| " + " | ".join(padded) + " |")
    return out


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(
    tables: dict[str, pd.DataFrame],
    environments: dict[str, pd.DataFrame] | None = None,
    mixed: dict[str, str] | None = None,
    reliability: dict[str, pd.DataFrame] | None = None,
) -> str:
    """One ``booktabs`` table per task (needs ``\\usepackage{booktabs}``; no jinja2 needed),
    with a warning where ``mixed`` names the task and the rows' environment below it (as
    :func:`to_markdown`), then one per task of ``reliability`` (:func:`reliability_frames`)."""
    environments, mixed = environments or {}, mixed or {}
    out = ["% Generated by harness-report; needs \\usepackage{booktabs}.", ""]
    for task, table in tables.items():
        warning = f" Warning: {mixed_warning(task, mixed[task])}." if task in mixed else ""
        title = (
            f"{latex_escape('Attribution methods vs activation patching on task')} "
            f"\\texttt{{{latex_escape(task)}}}.{latex_escape(warning)}"
        )
        below = []
        if task in environments:
            below = ["", "\\medskip", "Environment of the runs:", "", "\\smallskip"]
            below += _latex_tabular(environments[task])
        out += _latex_table(table, title, "tab:", task, below)
    for task, table in (reliability or {}).items():
        caption = "Reliability scores (AUROC beside that of abs_atp) on task"
        title = f"{latex_escape(caption)} \\texttt{{{latex_escape(task)}}}."
        out += _latex_table(table, title, "tab:rel-", task)
    return "\n".join(out)


def _latex_tabular(table: pd.DataFrame) -> list[str]:
    """The lines of one ``booktabs`` tabular of ``table``."""
    header, cells = _header_and_cells(table, missing="--")
    spec = "".join("r" if pd.api.types.is_numeric_dtype(table[c]) else "l" for c in table.columns)
    out = [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    out += [" & ".join(latex_escape(c) for c in row) + " \\\\" for row in cells]
    return [*out, "\\bottomrule", "\\end{tabular}"]


def _latex_table(
    table: pd.DataFrame, caption: str, label: str, task: str, below: Sequence[str] = ()
) -> list[str]:
    """The lines of one ``booktabs`` table (``caption`` already escaped; ``below``: lines
    after the tabular, inside the table)."""
    return [
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}{''.join(ch if ch.isalnum() else '-' for ch in task)}}}",
        *_latex_tabular(table),
        *below,
        "\\end{table}",
        "",
    ]


def _legend() -> str:
    return (
        "clean acc.: the model's accuracy on the clean prompts (answer beats wrong answer); "
        "solved: 1 when that accuracy is above chance (exact one-sided binomial test at "
        "truth.confidence), 0 when the model cannot do the task (such rows measure attributions "
        "of noise: do not average them with the others), missing when too few prompts to tell "
        "(even all correct would not beat chance), a mean over the runs that could tell; "
        "Spearman: rank correlation of estimates with the activation-patching effects, with "
        "its bootstrap confidence interval (CI lo / hi / width, over the scored components); "
        "truth n: components whose effect was patched (all, or the truth.sample subset); "
        "rel. error: relative error of the estimates; top-k recall: share of the k largest true "
        "effects among the k largest estimates; CPR / CMD: circuit faithfulness areas (higher / "
        "lower is better); flag precision / recall: of the reliability flag at finding "
        "unreliable AtP estimates; bound coverage: share of true effects inside the error bound; "
        "wall s, forward, backward, HVP: the method's cost. Means over `runs` runs. "
        "Environment: the versions and device each row's runs recorded (comma-separated when "
        f"they differ; {UNKNOWN}: a record without them)."
    )


def _reliability_legend() -> str:
    return (
        "Reliability scores: tier: the cheapest `diagnostics` tier that computes the score "
        "(cheap: a fixed number of passes whatever the number of components; exact: passes in "
        "proportion to it); AUROC / AP: how well the score ranks the components whose AtP error "
        "exceeds `unreliable.abs + unreliable.rel * |truth|`, beside the AUROC of abs_atp, |AtP| "
        "itself (a score is worth its cost only where it beats it); rel: the same against the "
        "relative error alone (`unreliable.rel * |truth|`). Means over `runs` runs."
    )


# --------------------------------------------------------------------------------------------
# Report


def collect_and_warn(root: Path) -> Collected:
    """:func:`collect`, printing on stderr a warning per skipped run, one counting the
    unverified runs and one per table that mixes versions."""
    collected = collect(root)
    for run_dir, reason in collected.skipped:
        print(f"warning: skipped {run_dir}: {reason}", file=sys.stderr)
    if collected.unverified:
        print(
            f"warning: {len(collected.unverified)} of {len(collected.results)} runs unverified: "
            "no files.json with their SHA-256s (written by an older harness), so an edit "
            "cannot be detected",
            file=sys.stderr,
        )
    for task, what in mixed_versions(collected.results).items():
        print(f"warning: {mixed_warning(task, what)}", file=sys.stderr)
    return collected


def collect_runs(root: Path) -> Collected:
    """:func:`collect_and_warn` of a folder that holds at least one complete run; otherwise a
    ValueError naming the folder."""
    if not Path(root).is_dir():
        raise ValueError(f"{str(root)!r} is not a directory")
    collected = collect_and_warn(root)
    if collected.results.empty:
        raise ValueError(f"no complete run below {str(root)!r}")
    return collected


def write_report(root: Path, out: Path | None = None, formats: Sequence[str] = ("png", "pdf")):
    """Collect the runs below ``root`` and write results, tables and figures (nothing when
    no run is complete); return what was collected."""
    root = Path(root)
    collected = collect_and_warn(root)
    if not collected.results.empty:
        write_outputs(collected, Path(out) if out is not None else root / "report", formats)
    return collected


def write_outputs(collected: Collected, out: Path, formats: Sequence[str]) -> None:
    """Write ``collected`` (at least one run) into ``out``: results.parquet, tables.md,
    tables.tex and figures/."""
    from harness import plots

    out.mkdir(parents=True, exist_ok=True)
    collected.results.to_parquet(out / "results.parquet", index=False)
    tables = table_frames(collected.results)
    environments = environment_frames(collected.results)
    mixed = mixed_versions(collected.results)
    reliability = reliability_frames(collected.results)
    (out / "tables.md").write_text(to_markdown(tables, environments, mixed, reliability))
    (out / "tables.tex").write_text(to_latex(tables, environments, mixed, reliability))
    figure_dir = out / "figures"
    makers = {
        "estimate_vs_truth": lambda: plots.method_scatter(collected.estimates),
        "error_vs_cost": lambda: plots.error_vs_cost(collected.results),
        "error_by_layer_site": lambda: plots.error_by_layer_site(collected.estimates),
        "reliability_pr": lambda: plots.reliability_pr(collected.estimates),
    }
    for name, make in makers.items():
        fig = make()
        plots.save(fig, figure_dir, name, formats)
        plots.close([fig])


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``harness-report DIR``."""
    parser = argparse.ArgumentParser(
        prog="harness-report",
        description="Gather every run below DIR into DIR/report/: results.parquet, "
        "tables.md, tables.tex and figures/.",
    )
    parser.add_argument("dir", type=Path, help="a results dir, multirun dir or run dir")
    parser.add_argument("--out", type=Path, default=None, help="output folder (DIR/report)")
    parser.add_argument(
        "--formats", default="png,pdf", help="figure formats, comma-separated (png,pdf)"
    )
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        print(f"error: {str(args.dir)!r} is not a directory", file=sys.stderr)
        sys.exit(2)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    out = args.out or args.dir / "report"
    try:
        check_formats(formats)
        collected = collect_runs(args.dir)  # before check_out_dir, which makes the folder
        check_out_dir(out)
        write_outputs(collected, out, formats)
    except (ValueError, OSError) as err:
        message = str(err) if isinstance(err, ValueError) else f"cannot write {out}: {err.strerror}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    unverified = f", {len(collected.unverified)} unverified" if collected.unverified else ""
    print(
        f"{len(collected.results)} runs ({len(collected.skipped)} skipped{unverified}) -> {out}: "
        "results.parquet, tables.md, tables.tex, figures/"
    )


if __name__ == "__main__":
    main()
