#!/usr/bin/env bash
# One call on a CUDA machine: the whole test suite (CUDA tests included) and every benchmark,
# raw outputs into OUTDIR. Meant for a short GPU lease, so it uses the machine's own python3
# (torch with CUDA) and needs only the data tarball and, for frost, an imagecorruptions wheel.
#
#   AUGMAX_DATA=/path/with/cifar10-jpeg.tar.xz bash bench/run_gpu.sh OUTDIR [COMMIT]
#
# COMMIT names the commit in the outputs when the copy has no .git.
set -uo pipefail
out=${1:?usage: bench/run_gpu.sh OUTDIR [COMMIT]}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
commit=${2:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
{
    echo "commit $commit"; date -u +%Y-%m-%dT%H:%M:%SZ
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} > "$out/env.txt" 2>&1
step() {  # name, command...: run, keep going on failure, note the exit code
    local name=$1; shift
    echo "== $name: $*"
    "$@" > "$out/$name.txt" 2>&1
    echo "   exit $?"
}
step tests python3 -m pytest -q -n 8 -p no:cacheprovider tests
step augment-gpu python3 bench/augment.py --device cuda --repeats 20
step corrupt-gpu python3 bench/corrupt.py --devices cuda --repeats 5
step train_step-gpu python3 bench/train_step.py --device cuda
step train_step-gpu-pgd python3 bench/train_step.py --device cuda --attack pgd
step train_step-gpu-compile python3 bench/train_step.py --device cuda --compile
for f in "$out"/*.txt; do sed -i "1i # commit $commit, $(date -u +%Y-%m-%d)" "$f"; done
