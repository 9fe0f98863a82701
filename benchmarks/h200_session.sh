#!/usr/bin/env bash
# One prepared device session (NVIDIA H200 machine, 16 CPU cores), run through the `device` tool:
#
#   1. GPU: benchmarks/gpu_check.py (CPU/GPU agreement of one training step + GPU training speed)
#   2. GPU: the CUDA test files on the real GPU (they normally run under the Numba CUDA simulator)
#   3. GPU: the paper's N-MNIST CNN on NMNISTsmall, one seed per loss, 4 runs side by side on the
#      GPU, stopped with SIGINT at a time limit (issue 8, network (b), partial)
#   4. CPU (in the background, 12 of the 16 cores): a tuning grid of the dense-network study on the
#      validation split of train1K (issue 8; test100 is evaluated by `pysrm train` but never read
#      for decisions: benchmarks/summarize_tuning.py reads val_acc only)
#
# Needs the NMNISTsmall folder copied to .devdata/NMNISTsmall (git-ignored; carried).
# Everything that comes back is written under $OUT (at most 8 files).
set -u
OUT=${OUT:-/tmp/pysrm_out}
mkdir -p "$OUT"
DATA=${DATA:-$PWD/.devdata/NMNISTsmall}
LIMIT=${LIMIT:-400}            # seconds of the whole script, then everything is stopped and packed
export PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(el) s] $*"; }

log "machine"; nvidia-smi -L; nproc; lscpu | grep -m1 'Model name'
python3 -c "import numba, numpy, scipy, click; print('numba', numba.__version__, 'numpy', numpy.__version__)"
if [ -z "${SKIP_INSTALL:-}" ]; then
  python3 -m pip install -q --no-deps --no-build-isolation --no-index . >"$OUT/install.log" 2>&1 \
    || { log "pip install failed (see install.log)"; tail -5 "$OUT/install.log"; }
fi
if ! command -v pysrm >/dev/null; then   # fallback: run from the checkout
  log "no pysrm command after install: using a shim"
  mkdir -p /tmp/shim/bin /tmp/shim/lib && ln -sfn "$PWD/cli" /tmp/shim/lib/pysrm_cli
  printf '#!/bin/sh\nexec python3 -c "import sys; from pysrm_cli.main import main; sys.argv[0]=\\"pysrm\\"; sys.exit(main())" "$@"\n' >/tmp/shim/bin/pysrm
  chmod +x /tmp/shim/bin/pysrm
  export PATH=/tmp/shim/bin:$PATH PYTHONPATH=$PWD:/tmp/shim/lib
fi

# ---- 4. CPU tuning grid in the background ----------------------------------------------------
STUDY=examples/configs/nmnist_small_study.toml
mkdir -p runs/tune
grid() {
  for L in spike-rate spikemax spikemax-g spikemax-s; do echo "long_$L $L --epochs 60 --lr-decay 0.97"; done
  for L in spike-rate spikemax spikemax-g spikemax-s; do echo "longj4_$L $L --epochs 60 --lr-decay 0.97 --jitter 4"; done
  for L in spike-rate spikemax spikemax-g spikemax-s; do echo "j4_$L $L --jitter 4"; done
  for L in spike-rate spikemax spikemax-g spikemax-s; do echo "base_s1_$L $L --seed 1"; done
}
GRID=
[ "${RUN_GRID:-1}" = 1 ] && ( grid | NUMBA_NUM_THREADS=1 xargs -P 12 -L 1 sh -c \
    'pysrm train --config '"$STUDY"' --data-dir '"$DATA"' --val-split 0.2 --trials 1 --out runs/tune/$0 --loss "$@" >runs/tune/$0.log 2>&1' \
) &
[ "${RUN_GRID:-1}" = 1 ] && GRID=$!

# ---- 2. CUDA tests on the real GPU (small kernels; alongside the gpu_check) ----------------------
NUMBA_NUM_THREADS=2 timeout ${TESTS_S:-170} python3 -m pytest -q -p no:cacheprovider \
  tests/test_cuda_ops.py tests/test_cuda_losses.py >"$OUT/cuda_tests_real_gpu.txt" 2>&1 &
TESTS=$!

# ---- 1. gpu_check -------------------------------------------------------------------------------
log "gpu_check"
NUMBA_NUM_THREADS=2 timeout ${GPU_CHECK_S:-200} python3 benchmarks/gpu_check.py --budget 5 --out "$OUT/gpu_check_h200.md" 2>&1
log "gpu_check rc=$?"

# ---- 3. CNN on the GPU, 4 losses side by side ------------------------------------------------------
CNN_S=$(( LIMIT - $(el) - 45 ))
log "CNN runs for ${CNN_S} s"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
mkdir -p runs/cnn
[ "$CNN_S" -gt 40 ] && for L in spike-rate spikemax spikemax-g spikemax-s; do
  NUMBA_NUM_THREADS=1 timeout -s INT "$CNN_S" pysrm train --config examples/configs/nmnist.toml \
    --data-dir "$DATA" --train-list train1K.txt --test-list test100.txt --device cuda \
    --epochs 30 --trials 1 --seed 0 --loss $L --out runs/cnn/$L >runs/cnn/$L.log 2>&1 &
done
wait $TESTS; log "CUDA tests on the GPU rc=$?"; tail -3 "$OUT/cuda_tests_real_gpu.txt"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
wait $(jobs -p | grep -v "^${GRID:-none}$") 2>/dev/null
log "CNN runs ended"
for L in spike-rate spikemax spikemax-g spikemax-s; do echo "== $L"; tail -4 runs/cnn/$L.log; done

# ---- stop the grid at the limit, pack -----------------------------------------------------------
while [ -n "$GRID" ] && kill -0 $GRID 2>/dev/null && [ $(el) -lt $(( LIMIT - 15 )) ]; do sleep 5; done
pkill -INT -f "runs/tune" ; sleep 8; pkill -9 -f "runs/tune"
log "grid ended"
tar czf "$OUT/tune.tar.gz" --exclude='*.npz' runs/tune
tar czf "$OUT/cnn.tar.gz" --exclude='*.npz' runs/cnn
[ -n "$GRID" ] && python3 benchmarks/summarize_tuning.py runs/tune 2>&1 | tee "$OUT/tune_summary.txt"
log "done"
