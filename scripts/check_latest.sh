#!/usr/bin/env bash
# Does the harness work on the newest release of every dependency? Run this before refreshing
# requirements/lock-cpu.txt (not part of .ci/run).
#
# It makes a new virtual environment in an empty temporary folder, installs the project with
# every extra and no lock, upgrading each dependency to its newest release, then runs the
# default job there and the fast tests (-m "not slow"). torch is held at the lock's CPU pin
# because an unpinned torch is a multi-GB CUDA build; TORCH_SPEC=torch checks the newest torch.
#
#   bash scripts/check_latest.sh              # KEEP=1 keeps the temporary folder
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/check-latest.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
echo "check_latest: new environment in $work" >&2

python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
torch_spec=${TORCH_SPEC:-torch==2.13.0}
pip install -q "$torch_spec"
# torch_spec named again: --upgrade-strategy eager would otherwise lift torch past it
pip install -q --upgrade --upgrade-strategy eager -e "$repo[test,launchers]" "$torch_spec"

echo "check_latest: versions that differ from requirements/lock-cpu.txt:" >&2
python3 - "$repo/requirements/lock-cpu.txt" <<'PY' >&2
import re
import sys
from importlib import metadata

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

locked = {}
for line in open(sys.argv[1]):
    match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
    if match:
        locked[norm(match.group(1))] = match.group(2)
for dist in sorted(metadata.distributions(), key=lambda d: norm(d.metadata["Name"])):
    name, version = norm(dist.metadata["Name"]), dist.version
    if name in locked and locked[name] != version.split("+")[0]:
        print(f"  {name}: {locked[name]} -> {version}")
PY

cd "$work"
harness results_dir="$work/results"
cd "$repo"
pytest -q -p no:cacheprovider -m "not slow"
