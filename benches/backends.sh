#!/usr/bin/env bash
# Every matmul backend side by side: the per-shape table (wall time on all threads, then CPU time
# per core on one thread), then whole training steps per backend, interleaved (A B C, A B C) so a
# change of load hits every backend alike. The 1-minute load average is printed around each run.
#
#   bash benches/backends.sh            # all of it (about 10 minutes on a quiet 2-core machine)
#   STEPS=6 ROUNDS=2 bash benches/backends.sh steps
#   bash benches/backends.sh table
#
# Needs libopenblas-dev for the blas backends. OPENBLAS_CORETYPE is passed through (OpenBLAS reads
# it when it loads); try e.g. OPENBLAS_CORETYPE=Haswell against the autodetected core.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
STEPS="${STEPS:-6}"
ROUNDS="${ROUNDS:-2}"
BACKENDS="${BACKENDS:-matrixmultiply gemm gemm-rayon blas blas-threaded}"
FEATURES="gemm-rayon,blas"
load() { cut -d' ' -f1-3 /proc/loadavg; }

if [[ "$what" == all || "$what" == table ]]; then
    cargo build --release --quiet -p tunelab-benches --features "$FEATURES" --example matmul_table
    echo "== per-shape GFLOP/s, wall time, $(nproc) threads"
    ./target/release/examples/matmul_table --rounds 5
    echo "== per-shape GFLOP/s per core: one thread, its CPU time"
    TUNELAB_THREADS=1 ./target/release/examples/matmul_table --rounds 5 --cpu \
        --backends matrixmultiply,gemm,blas
fi

if [[ "$what" == all || "$what" == steps ]]; then
    cargo build --release --quiet --features "$FEATURES" --example step_time
    for case in "256 full" "256 lora_r8_qv" "512 full" "512 lora_r8_qv"; do
        for round in $(seq "$ROUNDS"); do
            for backend in $BACKENDS; do
                before="$(load)"
                # The first step warms up (allocations, OpenBLAS's threads); the median of the
                # rest is the figure.
                ms=$(TUNELAB_BACKEND="$backend" ./target/release/examples/step_time $case "$STEPS" |
                    sed -n 's/^step [1-9][0-9]*: \([0-9.]*\) ms.*/\1/p' | sort -n |
                    awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
                echo "step $case round $round $backend: median $ms ms (load $before -> $(load))"
            done
        done
    done
fi
