#!/usr/bin/env bash
# The GPU checks and benchmarks, for a machine that has torch with CUDA but no package registry (run from
# the repository root; fggp is imported from the checkout, not installed). Results go to $OUT if set,
# else benchmarks/results; logs are written there too, as the steps run.
#
#   bash benchmarks/gpu_session.sh check          # CUDA tests (tests/test_cuda.py) + one pruning step per recipe
#   bash benchmarks/gpu_session.sh bench [ARCH [OPTION...]]   # training throughput; ARCH alone (vgg19 or
#       resnet50) merges into the device's JSON already in benchmarks/results/; OPTIONs go to bench_train.py
#
# Each phase, one arch at a time for `bench`, is meant to fit one 10-minute command. Afterwards copy
# $OUT/<device>.json into benchmarks/results/ and $OUT/PERFORMANCE.md over docs/PERFORMANCE.md (before the
# second arch, so that it merges), and commit them.
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
    arch=${2:-vgg19,resnet50}
    markdown=docs/PERFORMANCE.md
    if [ -n "${OUT:-}" ]; then  # a copy that comes back from the device machine
      cp benchmarks/results/*.json "$out"/ 2>/dev/null || true
      markdown=$out/PERFORMANCE.md
      cp docs/PERFORMANCE.md "$markdown"
    fi
    "$python" benchmarks/bench_train.py --arch "$arch" --merge --out-dir "$out" --markdown "$markdown" "${@:3}" \
      2>&1 | tee "$out/bench_train-${arch//,/-}.log"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_session.sh check | bench [vgg19|resnet50]" >&2
    exit 2
    ;;
esac
