#!/usr/bin/env bash
# The GPU checks that benchmarks/README.md leaves open ("GPU run"), in one call of a lent machine:
#   1. the bf16 efficiency of an SFT step, with torch's cuDNN attention and without it. Is the 0.3% measured on
#      an H200 the per-length plan builds of cuDNN attention? efficiency.py times its batches twice, so the
#      second pass shows the step without any first-time setup;
#   2. naive, ddp and fsdp SFT in bf16 through the stage script. Since fp32 master weights, their final losses
#      should agree (they split 6.855 / 3.284 before);
#   3. coati against TRL, PPO only, two repeats: a second GPU repeat of run.py (needs trl importable).
# Every step has its own time limit, and the next one runs whatever happened. The limits add up to 570 s, under
# the lent machine's 600 s per call. The exit status counts the steps that failed.
#
#   OUT=/some/dir bash benchmarks/gpu_checks.sh        # from the repository root; figures and logs go to $OUT
#   bash benchmarks/gpu_checks.sh --cpu                # a quick pass of this script itself, tiny sizes, no GPU
#   bash benchmarks/gpu_checks.sh --dry                # print the GPU steps' commands (RUN ...), run nothing
#
# The lent machine reaches no package index. TRL (and what it needs beyond that machine's stack) can travel
# as wheels in .gpu_wheels/ (e.g. `pip download --no-deps trl==1.12.0 datasets==5.2.0 dill multiprocess -d
# .gpu_wheels` here, with --python-version and --only-binary=:all: if that machine's Python differs, then
# carried); they are installed with --target into .gpu_deps/, outside the venv.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MODE=${1:-gpu}  # gpu, --cpu or --dry
case "$MODE" in
    gpu | --cpu | --dry) ;;
    *) echo "gpu_checks.sh: unknown argument '$MODE'; use none (on a GPU machine), --cpu or --dry" >&2; exit 2 ;;
esac
OUT=${OUT:-outputs/gpu_checks}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
failed=0

step() {  # step NAME SECONDS COMMAND...: run one check under a time limit, its output in $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    if [ "$MODE" = --dry ]; then
        echo "RUN $(printf '%q ' "$@")"
        return
    fi
    echo "== $name (at most ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 15 "$OUT/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start))s"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

[ "$MODE" = --dry ] || "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers',
      transformers.__version__, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')" |
    tee "$OUT/versions.txt"
if [ "$MODE" != --dry ] && [ -d .gpu_wheels ] && ! "$PY" -c "import trl" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-index --target .gpu_deps .gpu_wheels/*.whl
    export PYTHONPATH="$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}"
fi

if [ "$MODE" = --cpu ]; then
    size=(--layers 2 --width 64 --batch_size 2 --steps 2 --warmup 1 --matmul_n 256)
    step efficiency_fp32 300 "$PY" benchmarks/efficiency.py "${size[@]}" --out "$OUT/efficiency_fp32.json"
    step efficiency_fp32_no_cudnn 300 "$PY" benchmarks/efficiency.py "${size[@]}" --no_cudnn_attention \
        --out "$OUT/efficiency_fp32_no_cudnn.json"
    step strategies_sft 600 "$PY" benchmarks/gpu_strategies.py --cpu --size tiny --dtype fp32 --rows 32 \
        --stages sft --strategies naive,ddp --out "$OUT/strategies"
    echo "(--cpu: run.py against TRL left out; it runs as it does on CPU, see benchmarks/README.md)"
else
    size=(--device cuda --dtype bf16 --layers 12 --width 768 --batch_size 16)
    step efficiency_bf16 110 "$PY" benchmarks/efficiency.py "${size[@]}" --breakdown \
        --out "$OUT/efficiency_bf16.json"
    step efficiency_bf16_no_cudnn 110 "$PY" benchmarks/efficiency.py "${size[@]}" --breakdown --no_cudnn_attention \
        --out "$OUT/efficiency_bf16_no_cudnn.json"
    step strategies_sft 150 "$PY" benchmarks/gpu_strategies.py --timeout 50 --stages sft --strategies naive,ddp,fsdp \
        --out "$OUT/strategies"
    if [ "$MODE" = --dry ] || "$PY" -c "import trl" 2>/dev/null; then
        step ppo_vs_trl 200 "$PY" benchmarks/run.py --python "$PY" --stages ppo --repeats 2 --checkpoint_batch 0 \
            --offload_models "" --no_flops --out "$OUT/run"
    else
        echo "== ppo_vs_trl: left out, trl does not import here (see .gpu_wheels above)"
    fi
fi
[ "$MODE" = --dry ] && exit 0
echo "== $failed step(s) failed; figures and logs in $OUT"
exit "$failed"
