#!/usr/bin/env bash
# Create or update adadet's project-local environment (.venv). Idempotent: when nothing
# that decides its content changed since the last successful run, it installs nothing.
#
#   VENV    where the environment lives (default: .venv in the repository)
#   PYTHON  the interpreter to base it on (default: python3). If that interpreter already
#           imports a detectron2 built with its compiled ops (a user's own source build),
#           adadet is installed into *that* environment and $VENV/bin/python just runs it:
#           its detectron2 and torch are used untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.adadet-setup-stamp"
inputs=(setup.py dev/setup_env.sh dev/constraints.txt dev/requirements-detectron2-compat.txt
        dev/install_detectron2.py adadet/compat/detectron2_c.py)
digest=$( (echo "$PYTHON"; cat "${inputs[@]}") | sha256sum | cut -d" " -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$digest" ]; then
  echo "[adadet] environment $VENV is up to date"
  exit 0
fi

has_compiled_detectron2() {
  "$1" - <<'PY' 2>/dev/null
import importlib.util, sys
spec = importlib.util.find_spec("detectron2._C")
sys.exit(0 if spec is not None and not spec.origin.endswith(".py") else 1)
PY
}

if has_compiled_detectron2 "$PYTHON"; then
  mode=existing
  target=$("$PYTHON" -c 'import sys; print(sys.executable)')
  if [ -f "$VENV/pyvenv.cfg" ]; then  # a real environment (adadet's own), not a shim
    echo "[adadet] error: $VENV is a Python environment of its own; using the existing" \
         "detectron2 would replace its python. Fix: give another folder, e.g." \
         "VENV=.venv-existing PYTHON=$PYTHON make test (or remove $VENV first)." >&2
    exit 1
  fi
  echo "[adadet] $target has a detectron2 with compiled ops: using it (and its torch) untouched"
  mkdir -p "$VENV/bin"
  printf '#!/bin/sh\n# adadet runs in an existing environment (dev/setup_env.sh)\nexec "%s" "$@"\n' \
    "$target" > "$VENV/bin/python"
  chmod +x "$VENV/bin/python"
else
  mode=compat
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

if [ "$mode" = compat ]; then
  echo "[adadet] installing torch and torchvision (pinned in dev/constraints.txt; a few minutes the first time)"
  "${PIP[@]}" -c dev/constraints.txt torch torchvision
  echo "[adadet] installing detectron2 v0.6's runtime dependencies"
  "${PIP[@]}" -c dev/constraints.txt -r dev/requirements-detectron2-compat.txt
  "$VENV/bin/python" dev/install_detectron2.py --cache-dir "$VENV/cache"
  echo "[adadet] installing adadet (editable) and its test tools"
  "${PIP[@]}" -c dev/constraints.txt -c dev/requirements-detectron2-compat.txt -e ".[test]"
else
  # Only what is missing, so nothing of the user's installation is replaced.
  "${PIP[@]}" --no-deps -e .
  "$VENV/bin/python" - <<'PY' | xargs -r "${PIP[@]}"
import importlib.util
wanted = {"pycocotools": "pycocotools", "cv2": "opencv-python-headless", "fvcore": "fvcore",
          "matplotlib": "matplotlib", "tensorboard": "tensorboard", "pytest": "pytest",
          "imgviz": "imgviz"}
print(" ".join(pkg for module, pkg in wanted.items() if importlib.util.find_spec(module) is None))
PY
fi
echo "$digest" > "$STAMP"
"$VENV/bin/python" -m adadet.env
