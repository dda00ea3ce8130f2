#!/usr/bin/env bash
# Downloads, here, the wheels that the GPU image lacks into .whl/ (git-ignored),
# for the GPU job to take along: ml-collections and tensorboardX, the versions
# this checkout's venv has (pure Python; their own needs are on the image).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
version() { "$PY" -m pip show "$1" | awk '/^Version/{print $2}'; }
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "ml-collections==$(version ml-collections)" "tensorboardX==$(version tensorboardX)"
ls .whl
