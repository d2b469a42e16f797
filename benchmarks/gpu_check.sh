#!/usr/bin/env bash
# The training-speed check on one GPU, in one call: the ResNet-20 recipe at
# its full 64k steps through ilsvrc beside the tutorial loop
# (cifar_recipe.py), then where each step's time goes for ResNet-56, the
# paper's AlexNet, ResNet-110 and GoogLeNet (step_profile.py). Each section
# runs under its own time limit, cut to what is left of BUDGET seconds, so
# a slow part cannot take the rest down; the log and each section's JSON go
# to OUT_DIR, and the tables are repeated at the end.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [CIFAR]
#
# CIFAR: CIFAR-10 as a packed store (ilsvrc pack DIR CIFAR --size 32: 53 MiB,
# what travels to a GPU machine) or an ImageFolder root; default
# .gpu/cifar10-32. BUDGET (default 540) bounds the whole check.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [CIFAR]}
cifar=${2:-.gpu/cifar10-32}
mkdir -p "$out"
log="$out/log"
: >"$log"
deadline=$((SECONDS + ${BUDGET:-540}))
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

section() {  # section NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 left=$((deadline - SECONDS)) start=$SECONDS
    shift 2
    if [ "$left" -lt 30 ]; then
        echo "## $name: skipped, ${left}s left" | tee -a "$log"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "## $name (at most ${limit}s): $*" | tee -a "$log"
    timeout -k 5 "$limit" "$@" 2>&1 | grep --line-buffered -v '^USDT:\|^ERROR:20\|^STAGE:' | tee -a "$log"
    echo "## $name: exit ${PIPESTATUS[0]} after $((SECONDS - start))s" | tee -a "$log"
}

section machine 30 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
    python3 -c "import torch, torchvision, triton; print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__, \"triton\", triton.__version__)"'
section cifar_recipe 330 python3 benchmarks/cifar_recipe.py --data "$cifar" --stock-iterations 3000 --workers 8 \
    --no-progress --json "$out/cifar_recipe.json"
section resnet-56 130 python3 benchmarks/step_profile.py --model resnet-56 --modes graph --json "$out/resnet56.json"
section alexnet 130 python3 benchmarks/step_profile.py --recipe alexnet --modes graph,eager --images 2560 --steps 100 \
    --json "$out/alexnet.json"
section resnet-110 200 python3 benchmarks/step_profile.py --model resnet-110 --modes graph --json "$out/resnet110.json"
section googlenet 120 python3 benchmarks/step_profile.py --recipe googlenet --modes graph --images 2560 --steps 30 --warmup 3 --profile-steps 10 \
    --json "$out/googlenet.json"

echo "## summary" | tee -a "$log"
grep -E '^(## .*exit|resnet|alexnet|googlenet|mode |graph |default |eager |stock |ilsvrc)' "$log" | grep -v '^## .*(at most' | tee "$out/summary"
