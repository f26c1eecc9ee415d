#!/usr/bin/env bash
# Build (or bring up to date) .venv-perceptual: irctl plus its `perceptual` extra (pyiqa), in an
# environment of its own.
#
# Why a separate environment: pyiqa hard-requires torchvision, and the torchvision wheels the
# package registry has need the registry's CUDA build of torch (about 7 GB installed; it runs fine
# on a machine without a GPU). The core .venv keeps the small CPU-only torch, next to which
# torchvision cannot load. pyiqa is licensed PolyForm Noncommercial 1.0.0: non-commercial use only.
#
# Idempotent: an existing .venv-perceptual is reused; pip only adds what pyproject.toml's
# `perceptual` and `dev` extras now ask for and it lacks (irctl itself is an editable install,
# so it follows the working tree). --fresh rebuilds it from nothing.
#
# Usage: tools/perceptual-env.sh [--fresh]      (from anywhere; works in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-perceptual
if [[ "${1:-}" == "--fresh" ]]; then
    rm -rf "$venv"
fi
if [[ -x "$venv/bin/python" ]]; then
    echo "perceptual-env: updating $venv" >&2
else
    rm -rf "$venv"
    echo "perceptual-env: building $venv (CUDA torch + torchvision + pyiqa: a few minutes, ~7 GB)" >&2
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -e '.[perceptual,dev]' 2>&1 \
    | { grep -v "^WARNING: Location 'file:" || true; } >&2
"$venv/bin/python" - >&2 <<'PY'
import pyiqa, torch, torchvision
print(f"perceptual-env: pyiqa {pyiqa.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}")
PY
