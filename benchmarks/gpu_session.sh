#!/usr/bin/env bash
# One GPU session's checks, prepared to run once on a lent GPU machine (docs/benchmarks.md,
# "GPU"): install, the fused-kernel parity tests, the whole suite on CuPy (fused "auto", then the
# kernel-heavy files with the "steps" strategy), bench_gpu.py, and the LTG command on both
# backends. Every log goes to $OUT (default ./gpu_out); each stage has its own time limit, so a
# hung or failing stage does not cost the others.
#
#   bash benchmarks/gpu_session.sh                # everything (about 6-8 minutes on an H200)
#   STAGES="parity bench" bash benchmarks/gpu_session.sh
#
# The machine needs python3 with cupy, numpy, scipy, matplotlib, pytest, hypothesis, tqdm
# (pytest-xdist and torch are used when present). Nothing is downloaded.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
STAGES=${STAGES:-"install parity suite steps bench ltg"}
JOBS=${JOBS:-16}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-manualgrad-gpu}
PY=${PY:-python3}
XDIST=""
$PY -c "import xdist" 2>/dev/null && XDIST="-n $JOBS"
TIMEOUT=""
$PY -c "import pytest_timeout" 2>/dev/null && TIMEOUT="--timeout 240"

stage() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
say() { echo "=== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

if stage install; then
  say install
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  $PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 \
    || export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  $PY -c "import manualgrad, cupy; print('manualgrad', manualgrad.__version__, 'cupy', cupy.__version__)" \
    2>&1 | tee -a "$OUT/summary.txt"
fi
if stage parity; then
  say "parity: tests/test_gpu.py"
  timeout 300 $PY -m pytest -q -p no:cacheprovider --backend cupy $TIMEOUT $XDIST tests/test_gpu.py \
    > "$OUT/test_gpu.log" 2>&1
  tail -n 25 "$OUT/test_gpu.log" | tee -a "$OUT/summary.txt"
fi
if stage suite; then
  say "suite: pytest --backend cupy (fused auto)"
  timeout 420 $PY -m pytest -q -p no:cacheprovider --backend cupy $TIMEOUT $XDIST -rfEs \
    > "$OUT/suite_cupy.log" 2>&1
  grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/suite_cupy.log" | tail -n 40 | tee -a "$OUT/summary.txt"
fi
if stage steps; then
  say "steps: kernel-heavy files with MANUALGRAD_FUSED=steps"
  MANUALGRAD_FUSED=steps timeout 240 $PY -m pytest -q -p no:cacheprovider --backend cupy $TIMEOUT \
    $XDIST tests/test_rnn.py tests/test_hvp.py tests/test_coadjoint.py tests/test_lstm.py \
    tests/test_cells.py > "$OUT/suite_steps.log" 2>&1
  grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/suite_steps.log" | tail -n 20 | tee -a "$OUT/summary.txt"
fi
if stage bench; then
  say "bench: benchmarks/bench_gpu.py"
  timeout 480 $PY benchmarks/bench_gpu.py --repeat ${REPEAT:-7} --json "$OUT/bench_gpu.json" \
    > "$OUT/bench_gpu.log" 2>&1
  tail -n 16 "$OUT/bench_gpu.log" | tee -a "$OUT/summary.txt"
fi
if stage ltg; then
  for b in numpy cupy; do
    say "ltg: manualgrad --backend $b run ltg --quick"
    start=$(date +%s%N)
    timeout 240 $PY -c "import sys; from manualgrad.cli import main; sys.exit(main())" \
      --backend $b run ltg --quick --no-progress --out "/tmp/ltg_$b" > "$OUT/ltg_$b.log" 2>&1
    rc=$?
    end=$(date +%s%N)
    echo "ltg $b: rc $rc, wall $(( (end - start) / 1000000 )) ms; $(tail -n 1 "$OUT/ltg_$b.log")" \
      | tee -a "$OUT/summary.txt"
  done
fi
say done
