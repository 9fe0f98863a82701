#!/usr/bin/env bash
# One prepared device session on the H200 machine (issue 18), run through the `device` tool from the
# repository root:
#
#     run(command="bash benchmarks/h200_session.sh", carry=[".devdata", ".whl"], timeout_s=570)
#
# Needs (git-ignored, carried): .devdata/NMNISTsmall (256 training samples + their list),
# .devdata/dvs_gesture/*.bs2 (the real DVS Gesture samples), .whl/lava_dl_slim (lava-dl 0.6.0's
# `lava` package without its model weights and tests; its other needs are in the machine's image).
# Ends in about 8.5 minutes at most (LIMIT, default 510 s): every stage runs under its own `timeout`,
# shortened to what is left, and a failing stage does not stop the others.  Stages:
#
#   0. the machine, versions, pysrm's CUDA backend (allocator, cuBLAS)                  ~15 s
#   1. in parallel:  (a) the CUDA test files on the real GPU (incl. cuBLAS vs Numba GEMM)
#                    (b) benchmarks/gpu_check.py: CPU/GPU agreement, TF32 off and on
#                    (c) lava-dl's JIT compilation of its CUDA extensions (nvcc, CPU)   <= 200 s
#   2. benchmarks/gpu_bench.py: pysrm training / inference throughput, dense, CNN and DVS Gesture
#      networks at batch 8/32/128 on real data, GPU memory, first-step (cold cache) compile time,
#      launches per step; TF32 rows at batch 32; Numba GEMM and unfused-plan rows       <= 175 s
#   3. benchmarks/lavadl_gpu.py: lava-dl dense and CNN at batch 32 (8 and 128 as time allows)  <= 95 s
#   4. benchmarks/cuda_launch_count.py: launches per step, fused vs layer by layer, real shapes
#   5. summary.md: the tables side by side
#
# Everything under $OUT (7 files): session.log (all output), cuda_tests_gpu.txt, gpu_check.md,
# gpu_bench.json, lavadl_gpu.json, summary.md, logs.tar.gz (every stage's own log and tables).
set -u
OUT=${OUT:-/tmp/pysrm_out}
mkdir -p "$OUT" "$OUT/logs"
LIMIT=${LIMIT:-510}
export PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
left() { local l=$(( LIMIT - $(el) - ${2:-10} )); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo $l; }
until_() { local l=$(( $1 - $(el) )); [ "$l" -lt 1 ] && l=1; echo $l; }
exec > >(tee -a "$OUT/session.log") 2>&1
log() { echo "[$(el) s] $*"; }

log "0. machine"
nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
nproc; python3 --version
python3 -m pip list 2>/dev/null | grep -i -E "^(numba|numba-cuda|cupy|torch|numpy|scipy|threadpoolctl|llvmlite) " || true
timeout 60 python3 -c "
import json, pysrm.cuda as d; print('pysrm CUDA backend:', json.dumps(d.backend_info()))" 2>&1 || log "backend info FAILED"

log "1. tests, gpu_check, lava-dl JIT warm-up (in parallel)"
S1=$(left 200 20); E1=$(( $(el) + S1 ))
( for f in tests/test_cuda_cublas.py tests/test_cuda_plan.py tests/test_cuda_fused.py tests/test_cuda_ops.py \
           tests/test_cuda_losses.py; do   # one process per file: a timeout loses one file's summary only
    t=$(until_ $E1); echo "== $f (timeout $t s)"
    timeout "$t" python3 -m pytest -q -p no:cacheprovider -rfEs --tb=short "$f" 2>&1; echo "== $f: pytest rc=$?"
  done >"$OUT/cuda_tests_gpu.txt" 2>&1 ) &
TESTS=$!
( PYTHONPATH=$PWD/.whl/lava_dl_slim timeout "$S1" python3 benchmarks/lavadl_gpu.py --warmup-only \
    >"$OUT/logs/lavadl_warmup.log" 2>&1; echo "lava-dl warm-up rc=$?" >>"$OUT/logs/lavadl_warmup.log" ) &
WARM=$!
timeout "$S1" python3 benchmarks/gpu_check.py --tf32 both --no-speed --check-batch 2 --out "$OUT/gpu_check.md" \
  >"$OUT/logs/gpu_check.log" 2>&1
log "gpu_check rc=$?"; grep -E "^summary|FAILED|worst" "$OUT/gpu_check.md" 2>/dev/null || tail -20 "$OUT/logs/gpu_check.log"
wait $TESTS; log "CUDA tests on the GPU:"; tail -15 "$OUT/cuda_tests_gpu.txt"
wait $WARM; log "lava-dl warm-up:"; tail -4 "$OUT/logs/lavadl_warmup.log"

log "2. pysrm throughput (cold Numba cache: the first step of each network includes compilation)"
S2=$(left 175 110)
NUMBA_CACHE_DIR=/tmp/numba_cold timeout "$S2" python3 benchmarks/gpu_bench.py --nmnist .devdata/NMNISTsmall \
  --dvs .devdata/dvs_gesture --batches 8 32 128 --tf32-batches 32 --numba-gemm-batches 32 --unfused-batches 32 \
  --budget 2.5 --deadline $(( S2 - 25 )) --out "$OUT/logs/gpu_bench" >"$OUT/logs/gpu_bench.log" 2>&1
log "gpu_bench rc=$?"; cp "$OUT/logs/gpu_bench.json" "$OUT/" 2>/dev/null; grep -E "^\| " "$OUT/logs/gpu_bench.md" 2>/dev/null \
  || tail -30 "$OUT/logs/gpu_bench.log"

log "3. lava-dl on the GPU"
S3=$(left 95 40)
PYTHONPATH=$PWD/.whl/lava_dl_slim timeout "$S3" python3 benchmarks/lavadl_gpu.py --nmnist .devdata/NMNISTsmall \
  --nets dense cnn --batches 32 8 128 --budget 2.5 --deadline $(( S3 - 20 )) --out "$OUT/logs/lavadl_gpu" \
  >"$OUT/logs/lavadl_gpu.log" 2>&1
log "lava-dl rc=$?"; cp "$OUT/logs/lavadl_gpu.json" "$OUT/" 2>/dev/null; grep -E "^\| " "$OUT/logs/lavadl_gpu.md" 2>/dev/null \
  || tail -30 "$OUT/logs/lavadl_gpu.log"

log "4. launches per step, real shapes"
S4=$(left 35 15)
timeout "$S4" python3 benchmarks/cuda_launch_count.py --batch 32 >"$OUT/logs/launch_count.md" 2>&1
log "launch count rc=$?"; cat "$OUT/logs/launch_count.md"

log "5. summary"
timeout 20 python3 benchmarks/session_summary.py --out "$OUT/summary.md" --bench "$OUT/logs/gpu_bench.json" \
  --lava "$OUT/logs/lavadl_gpu.json" --check "$OUT/gpu_check.md" --tests "$OUT/cuda_tests_gpu.txt" \
  --launches "$OUT/logs/launch_count.md" 2>&1 | tail -40
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
log "done"
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
