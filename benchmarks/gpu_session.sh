#!/usr/bin/env bash
# The GPU checks and benchmarks, for a machine that has torch with CUDA but no package registry (run from
# the repository root; fggp is imported from the checkout, not installed). Results go to $OUT if set,
# else benchmarks/results; logs are written there too, as the steps run.
#
#   bash benchmarks/gpu_session.sh check   # CUDA tests (tests/test_cuda.py) + one pruning step per recipe
#   bash benchmarks/gpu_session.sh bench   # training throughput: vgg19 and resnet50, docs/PERFORMANCE.md section
#
# Each phase fits one 10-minute command. Copy $OUT/PERFORMANCE.md over docs/PERFORMANCE.md and the JSON
# files into benchmarks/results/ afterwards.
set -euo pipefail
phase=${1:-}
out=${OUT:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_DISABLE=1
python=${PYTHON:-python3}

case $phase in
  check)
    "$python" -c 'import sys, torch, torchvision
if not torch.cuda.is_available():
    sys.exit("gpu_session.sh: torch sees no CUDA device here")
print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
      torch.cuda.get_device_name())' | tee "$out/device.txt"
    status=0
    "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log" || status=1
    "$python" benchmarks/bench_prune.py --device cuda --json "$out/prune-cuda.json" 2>&1 | tee "$out/bench_prune.log"
    exit $status
    ;;
  bench)
    cp docs/PERFORMANCE.md "$out/PERFORMANCE.md"
    "$python" benchmarks/bench_train.py --out-dir "$out" --markdown "$out/PERFORMANCE.md" 2>&1 | tee "$out/bench_train.log"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_session.sh check|bench" >&2
    exit 2
    ;;
esac
