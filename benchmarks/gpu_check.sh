#!/usr/bin/env bash
# Everything the first GPU should answer, in one run of under 10 minutes:
#   1. the CuPy test cases (every test parametrised over backends, cupy id only);
#   2. the conv benchmark on CuPy, against PyTorch CUDA when torch sees a GPU;
#   3. one epoch of the MLP VAE on CuPy;
# and a report, $REPORT (default gpu_check/report.md), with each step's output and
# exit status. Run from the repository root:  bash benchmarks/gpu_check.sh
# Each step has its own time limit, so one that hangs cannot eat the others' time.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${OUTDIR:-gpu_check}
REPORT=${REPORT:-$OUTDIR/report.md}
PY=${PYTHON:-python}
mkdir -p "$OUTDIR"
export CI=true

{
  echo "# minigrad GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -5
  $PY -c "import cupy; print('cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())" 2>&1 | tail -1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())" 2>&1 | tail -1
  echo '```'
} > "$REPORT"

step() {  # step TITLE SECONDS COMMAND...: run it with a limit, append its output to the report
  local title=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "== $title (limit ${limit}s): $*" >&2
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$OUTDIR/step.log" 2>&1
  local rc=$?
  {
    echo
    echo "## $title"
    echo
    echo "\`$*\`: exit $rc$([ $rc = 124 ] && echo ' (time limit reached)'), $((SECONDS - start)) s"
    echo '```'
    tail -n 80 "$OUTDIR/step.log"
    echo '```'
  } >> "$REPORT"
  return 0
}

step "CuPy test cases" 300 $PY -m pytest tests -q -x -k cupy -p no:cacheprovider
step "conv benchmark, CuPy against PyTorch CUDA" 150 \
  $PY -m benchmarks.bench_conv --backend cupy --pairs 3 --repeats 10 --gemms
step "one MLP VAE epoch on CuPy" 120 \
  $PY -m models.vae --backend cupy --epochs 1 --out "$OUTDIR/vae-run" --overwrite
echo "report: $REPORT" >&2
