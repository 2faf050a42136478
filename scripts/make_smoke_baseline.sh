#!/usr/bin/env bash
# Rewrite results/baselines/smoke.json from measured noise: the smoke main job under five healthy settings, two at a
# time with one thread each (two 2-thread torch processes on 2 cores would oversubscribe), then `bench check
# --update` over all of them, with seed 0's lcovnet as the reference checkpoint.
#
#   A  seed 0, this CPU's kernels                    D  seed 1, this CPU's kernels
#   B  seed 0, AVX2 kernels (an AVX2-only CPU)       E  seed 2, this CPU's kernels
#   C  seed 0, generic kernels (no AVX)
#
# ATEN_CPU_CAPABILITY picks torch's own kernels; convolutions run in oneDNN, which picks its ISA separately
# (ONEDNN_MAX_CPU_ISA), so emulating another CPU needs both. C runs about 2.3 times slower than the others, so D and
# E share the other core meanwhile. Takes about 1.5 hours on 2 cores; run it on an idle machine.
# Usage: scripts/make_smoke_baseline.sh [WORKDIR]   (default: a new temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
mkdir -p "$work"

grid() {  # NAME SEED [ATEN_CPU_CAPABILITY ONEDNN_MAX_CPU_ISA]; without the last two: this CPU's own kernels
    env ${3:+ATEN_CPU_CAPABILITY=$3} ${4:+ONEDNN_MAX_CPU_ISA=$4} OMP_NUM_THREADS=1 bench run --models lcovnet,unet3d \
        --kd ca,ms --preset smoke --seeds "$2" --results "$work/$1" > "$work/$1.log" 2>&1
}

grid A 0 & grid B 0 avx2 AVX2 & wait
grid C 0 default SSE41 & { grid D 1 && grid E 2; } & wait

reference=$(ls -d "$work"/A/runs/*__lcovnet__kd-none__s0__*)
bench check --update --baseline results/baselines/smoke.json --reference "$reference" \
    --results "$work/A" --results "$work/B" --results "$work/C" --results "$work/D" --results "$work/E"
