#!/usr/bin/env bash
# Build (or reuse) .venv-perceptual: irctl plus its `perceptual` extra (pyiqa) in an environment
# of its own.
#
# Why a separate environment: pyiqa hard-requires torchvision, and the torchvision wheels the
# package registry has need the registry's CUDA build of torch (about 7 GB installed; it runs fine
# on a CPU-only machine). The core .venv keeps the small CPU-only torch, next to which torchvision
# cannot load. pyiqa is licensed PolyForm Noncommercial 1.0.0: non-commercial use only.
#
# Idempotent: an existing .venv-perceptual whose pyiqa and irctl import is reused as it is
# (the editable install follows the working tree); pass --fresh to rebuild it from nothing.
#
# Usage: tools/perceptual-env.sh [--fresh]      (from anywhere; works on the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-perceptual
if [[ "${1:-}" == "--fresh" ]]; then
    rm -rf "$venv"
fi
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import irctl, pyiqa, pytest' 2>/dev/null; then
    echo "perceptual-env: reusing $venv" >&2
    exit 0
fi
rm -rf "$venv"
echo "perceptual-env: building $venv (downloads CUDA torch + torchvision, a few minutes)" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -e '.[perceptual,dev]'
"$venv/bin/python" -c 'import pyiqa, torchvision; print("perceptual-env: pyiqa", pyiqa.__version__, "torch", __import__("torch").__version__, "torchvision", torchvision.__version__)' >&2
