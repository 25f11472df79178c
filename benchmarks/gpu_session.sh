#!/usr/bin/env bash
# Everything a lent GPU session checks and measures, in one command (BENCHMARKS.md, "On one GPU"):
#   1. the CUDA-only tests (a training step replayed from a CUDA graph trains as eager steps do)
#   2. `digits run --device cuda --recipe fast`, a whole process, its output and report kept
#   3. the same under torchrun (NCCL, one process): the several-GPU path's set-up and all-reduce
#   4. benchmarks/gpu.py, every GPU timing, into gpu.json
#
#   benchmarks/gpu_session.sh DATA_DIR OUT_DIR [BUDGET_S] [DEVICE]
# DEVICE defaults to cuda; `cpu` runs steps 2-4 on the CPU (a check of this script, slow).
# Everything printed is also kept in OUT_DIR/session.txt; the exit status is 1 if any step failed.
# Steps 1-3 take up to 6.5 minutes if they hang, gpu.py BUDGET_S + 200 s: size the device call's
# limit to fit.
set -u
data=$1 out=$2 budget=${3:-360} device=${4:-cuda}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
failed=0

step() {  # name, seconds allowed, command...: its output in OUT_DIR/name.txt, its last lines shown
    local name=$1 limit=$2 status t0=$SECONDS
    shift 2
    timeout -k 10 "$limit" "$@" > "$out/$name.txt" 2>&1
    status=$?
    echo "== $name: exit $status in $((SECONDS - t0)) s"
    tail -n 6 "$out/$name.txt"
    [ "$status" -eq 0 ] || failed=1
}

session() {
    $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    rm -rf /tmp/gpu-run-fast /tmp/gpu-run-ddp  # a reused machine's old runs must not pass for new ones
    if [ "$device" = cuda ]; then
        step pytest_cuda 120 $py -m pytest -q -p no:cacheprovider -rs tests/test_ondevice.py -k "gpu_trains"
    fi
    step run_fast 120 $py -m digits run --device "$device" --recipe fast --data-dir "$data" \
        --out /tmp/gpu-run-fast --no-progress --no-tensorboard
    [ -f /tmp/gpu-run-fast/report.md ] && cp /tmp/gpu-run-fast/report.md "$out/run_fast_report.md"
    if [ "$device" = cuda ]; then
        step torchrun_fast 150 $py -m torch.distributed.run --standalone --nproc_per_node 1 -m digits run \
            --device cuda --recipe fast --data-dir "$data" --out /tmp/gpu-run-ddp --no-progress --no-tensorboard
    fi
    step gpu "$(( ${budget%.*} + 200 ))" $py benchmarks/gpu.py --device "$device" --data-dir "$data" \
        --json "$out/gpu.json" --budget-s "$budget"
    return $failed
}

session 2>&1 | tee "$out/session.txt"
exit "${PIPESTATUS[0]}"
