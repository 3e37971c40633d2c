#!/usr/bin/env bash
# The GPU benchmarks in under 10 minutes, on a machine with a CUDA GPU:
#
#     bash benchmarks/run_gpu.sh            # then commit benchmarks/results/*_cuda.json
#
# First every benchmark's --quick run (about 3 minutes: a complete set of *_cuda.json records; bench_train
# includes each book network's FLOP rate against a matmul's peak, channels-last and torch.compile on CUDA),
# including bench_sweep (`kr sweep` with one worker, then --workers 2 on one GPU: four tiny runs in a
# temporary folder), then the full runs with the time that is left; a full run that does not
# finish in time is stopped and its quick record stays. The book build is not a GPU benchmark and is skipped.
# PYTHON picks the interpreter (default: the project's .venv, else python3); BUDGET the total seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
BUDGET="${BUDGET:-540}"
start=$(date +%s)

"$PYTHON" - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("run_gpu.sh: torch sees no CUDA device here; nothing to do")
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY

status=0
"$PYTHON" benchmarks/run_all.py --device cuda --quick --skip book --budget $(( BUDGET / 2 )) || status=$?
left=$(( BUDGET - ($(date +%s) - start) ))
if [ "$left" -gt 30 ]; then
    "$PYTHON" benchmarks/run_all.py --device cuda --skip book --budget "$left" || status=$?
fi
echo "run_gpu.sh: done in $(( $(date +%s) - start )) s; records in benchmarks/results/*_cuda.json"
exit $status
