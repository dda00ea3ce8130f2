#!/usr/bin/env bash
# The GPU job: the next runs of the queue, in one 10-minute job (docs/gpu.md).
#
#   bash benchmarks/gpu/paper_sweep.sh            # on the GPU: plans against start + 540 s
#   bash benchmarks/gpu/paper_sweep.sh --smoke    # on CPU: the same steps at toy size
#   python benchmarks/gpu/merge.py OUT_DIR        # afterwards, here: add its rows to results_paper/
#
# (a) installs the carried wheels in .whl/ (ml-collections, tensorboardX),
# (b) runs the estimator tests on the device, (c) reads benchmarks/gpu/queue.toml
# and skips the runs already in results_paper/results.csv, measures the
# population step and one evaluation on this device, plans the next runs that
# fit, (d) trains them as populations (a diverging run is frozen, the others
# go on), (e) evaluates each run as soon as its population stops and appends
# its row at once. Under $OUT: rows.csv, evals.jsonl, plan.json, profile.json
# and timing.log (each well under 16 MB). Other flags go to paper_sweep.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/workdirs/paper_sweep_out}
mkdir -p "$OUT"
LOG="$OUT/timing.log"
MODE=$([[ " $* " == *" --smoke "* ]] && echo --smoke || true)
echo "start $(date -u +%FT%TZ) mode=${MODE:-gpu}" >"$LOG"
# The whole call must end inside the job's 600 s: plan against this deadline.
export PAPER_SWEEP_DEADLINE=${PAPER_SWEEP_DEADLINE:-$(( $(date +%s) + ${PAPER_SWEEP_BUDGET:-540} ))}
if ls .whl/*.whl >/dev/null 2>&1; then                                   # (a)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
"$PY" -c "import ml_collections, tensorboardX, jax; print('jax', jax.__version__, jax.devices())" \
    2>&1 | tee -a "$LOG" || exit 1
if [ "$MODE" = "--smoke" ]; then                                         # (b)
  TESTS=(tests/test_estimators.py -k "brute_force and mss")
else
  # The estimators against brute force, on the device.
  TESTS=(tests/test_estimators.py)
fi
t0=$(date +%s)
timeout 60 "$PY" -m pytest -q -p no:cacheprovider -o addopts= "${TESTS[@]}" 2>&1 | tail -n 8 | tee -a "$LOG"
echo "tests_seconds $(( $(date +%s) - t0 ))" | tee -a "$LOG"
"$PY" benchmarks/gpu/paper_sweep.py "$@" --out "$OUT" 2>&1 | tee -a "$LOG"   # (c)-(e)
echo "end $(date -u +%FT%TZ)" >>"$LOG"
