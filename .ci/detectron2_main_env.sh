#!/usr/bin/env bash
# CI's second Detectron2: an environment with Detectron2 main built from source, with its
# compiled ops, the way a GPU user installs it (adadet's "existing detectron2" path).
#
#   .ci/detectron2_main_env.sh ENV_DIR      creates ENV_DIR (a venv) and prints its python
#
# The source is the test fixture ../shared/upstream/detectron2-main-<commit>.tar.gz (never
# part of the README's set-up). Building it takes 5-10 minutes on 2 cores, so the wheel is
# cached in $ADADET_CI_CACHE (default ~/.cache/adadet/ci), keyed by the tarball's sha256
# and the torch and Python versions; a machine without the cache builds it. The pinned
# torch is hard-linked from .venv (ADADET_CI_TORCH_FROM), not installed a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR=${1:?usage: .ci/detectron2_main_env.sh ENV_DIR}
TARBALL=${ADADET_DETECTRON2_MAIN_TARBALL:-../shared/upstream/detectron2-main-02b5c4e.tar.gz}
CACHE=${ADADET_CI_CACHE:-$HOME/.cache/adadet/ci}
PYTHON=${PYTHON:-python3}
if [ ! -f "$TARBALL" ]; then
  echo "[ci] $TARBALL is missing: it holds Detectron2 main's source for CI's second install" \
       "(set ADADET_DETECTRON2_MAIN_TARBALL to another copy)" >&2
  exit 1
fi

say() { echo "[ci] $*" >&2; }
mkdir -p "$ENV_DIR" && ENV_DIR=$(cd "$ENV_DIR" && pwd)
[ -x "$ENV_DIR/bin/python" ] || "$PYTHON" -m venv "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip install -q --disable-pip-version-check -c dev/constraints.txt)
# The pinned CUDA torch is 5.6 GB: a second copy does not fit on every CI machine, so the
# one in $TORCH_FROM (CI's compatibility environment, made just before) is hard-linked in.
TORCH_FROM=${ADADET_CI_TORCH_FROM:-.venv}
site=$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -x "$TORCH_FROM/bin/python" ] &&
   "$TORCH_FROM/bin/python" .ci/link_distributions.py "$site" torch torchvision; then
  say "torch and torchvision hard-linked from $TORCH_FROM (no second copy on disk)"
else  # start again from an empty venv: nothing half-linked stays
  rm -rf "$ENV_DIR" && "$PYTHON" -m venv "$ENV_DIR"
  say "installing torch and torchvision into $ENV_DIR (dev/constraints.txt)"
fi
# Checks the pins: a no-op after linking, an install otherwise.
"${PIP[@]}" torch torchvision wheel "setuptools<81"

key=$( (sha256sum "$TARBALL" | cut -d" " -f1
        "$ENV_DIR/bin/python" -c 'import sys, torch; print(sys.version, torch.__version__)') \
      | sha256sum | cut -c1-16)
wheel_dir="$CACHE/detectron2-main-$key"
if ! ls "$wheel_dir"/detectron2-*.whl >/dev/null 2>&1; then
  say "building Detectron2 main from $TARBALL (5-10 minutes on 2 cores; cached in $wheel_dir)"
  build=$(mktemp -d)
  tar xzf "$TARBALL" -C "$build"
  rm -rf "$wheel_dir.tmp" && mkdir -p "$wheel_dir.tmp"
  (cd "$build"/detectron2 && "$ENV_DIR/bin/python" -m pip wheel -q --no-deps \
     --no-build-isolation --disable-pip-version-check -w "$wheel_dir.tmp" .) >&2
  rm -rf "$build" "$wheel_dir"
  mv "$wheel_dir.tmp" "$wheel_dir"
else
  say "Detectron2 main wheel from the cache: $wheel_dir"
fi
"${PIP[@]}" "$wheel_dir"/detectron2-*.whl
"$ENV_DIR/bin/python" -c 'import detectron2, detectron2._C as C; print(f"[ci] detectron2 {detectron2.__version__} with compiled ops ({C.__file__})")' >&2
"$ENV_DIR/bin/python" -c 'import sys; print(sys.executable)'
