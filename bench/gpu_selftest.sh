#!/usr/bin/env bash
# Run on a lent GPU machine from the repository root, in one call:
#   bash bench/gpu_selftest.sh            (wheels for missing packages carried in .whl/, see the device tool's README)
# Installs what the machine lacks from .whl/*.whl, installs segkd-bench without touching its torch, then runs the
# GPU self-tests and benchmarks and prints their figures.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
export PYTHONUNBUFFERED=1
python3 -m bench.gpu_selftest --device cuda "$@"
python3 -m bench profile --models lcovnet,unet3d,nnunet --classes 17 --patch 64,128,128 --device cuda --runs 40 --warmup 10
python3 -m bench profile --models lcovnet,unet3d,nnunet --classes 17 --patch 64,128,128 --device cuda --runs 40 \
    --warmup 10 --amp bf16 --channels-last --no-thop
# Issue 16's GPU figures: whole-CT seconds of the three networks per runtime (CUDA events, median of 30 runs), patch
# latency (median of 30), and each network's top kernels in fp32 and bf16. onnxruntime uses the CUDA provider when
# an onnxruntime-gpu wheel is carried in .whl/, else it runs on the CPU ('onnxruntime providers' says which).
python3 benchmarks/bench_deploy.py --device cuda --runtimes eager,bf16,compile,ort-fp32 --runs 30 --kernels 10
