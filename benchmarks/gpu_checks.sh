#!/usr/bin/env bash
# The GPU checks that benchmarks/README.md leaves open ("GPU run"), in one call of a lent machine:
#   1. the Polyglot-Ko 1.3B shape (GPT-NeoX, 24 x 2048, random weights) in bf16: coati's SFT step, every weight
#      trained and LoRA r8, model FLOP/s over the GPU's measured bf16 matmul rate. Batches are padded to a
#      multiple of 64 tokens (--pad_to_multiple_of), so a handful of lengths recur and no per-length attention
#      plan (cuDNN) is built mid-measurement; the target is 40% for the full SFT step;
#   2. PPO under colossalai_gemini through train_prompts.py (a 109M llama, bf16), beside naive: the rollout samples
#      through Gemini's wrapper. Its HybridAdam kernels are compiled at the start, in the background (niced),
#      while step 1 runs;
#   3. naive and fsdp SFT in bf16 through the stage script. Since fp32 master weights, their final losses
#      should agree (they split 6.855 / 3.284 before).
# Every step has its own time limit, and the next one runs whatever happened. The limits add up to 570 s, under
# the lent machine's 600 s per call. The exit status counts the steps that failed. (The 12 x 768 efficiency run
# with and without cuDNN attention, and coati against TRL on the GPU, were dropped to make room; run.py and
# efficiency.py still run them by hand.)
#
#   OUT=/some/dir bash benchmarks/gpu_checks.sh        # from the repository root; figures and logs go to $OUT
#   bash benchmarks/gpu_checks.sh --cpu                # a quick pass of this script itself, tiny sizes, no GPU
#   bash benchmarks/gpu_checks.sh --dry                # print the GPU steps' commands (RUN ...), run nothing
#
# The lent machine reaches no package index. ColossalAI (and what its import needs) travels as wheels in
# .gpu_wheels/ (e.g. `pip wheel --no-deps colossalai==0.5.0 -w .gpu_wheels` and `pip download --no-deps
# galore-torch bitsandbytes -d .gpu_wheels` here, with --python-version and --only-binary=:all: if that machine's
# Python differs, then carried); they are installed with --target into .gpu_deps/, outside the venv.
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
if [ "$MODE" != --dry ] && [ -d .gpu_wheels ] && ! "$PY" -c "import colossalai" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-index --target .gpu_deps .gpu_wheels/*.whl
fi
[ -d .gpu_deps ] && export PYTHONPATH="$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}"

sft_1b=(benchmarks/efficiency.py --preset polyglot-ko-1.3b --pad_to_multiple_of 64)
if [ "$MODE" = --cpu ]; then
    # The same code paths, scaled down: 2 x 128 layers of the preset, fp32, the PPO driver with naive only.
    small=(--layers 2 --width 128 --batch_size 2 --steps 2 --warmup 1 --matmul_n 256)
    step sft_1b_full 300 "$PY" "${sft_1b[@]}" "${small[@]}" --out "$OUT/sft_1b_full.json"
    step sft_1b_lora 300 "$PY" "${sft_1b[@]}" "${small[@]}" --lora_rank 8 --out "$OUT/sft_1b_lora.json"
    step ppo_gemini 600 "$PY" benchmarks/gpu_strategies.py --cpu --size tiny --dtype fp32 --rows 16 \
        --stages rm,ppo --strategies naive --out "$OUT/ppo_gemini"
    echo "(--cpu: Gemini needs CUDA; its place in the PPO step is taken by naive alone)"
else
    if [ "$MODE" != --dry ] && "$PY" -c "import colossalai" 2>/dev/null; then
        # HybridAdam's CUDA and CPU kernels compile on first use (about 100 s on the H200): start now, niced, so
        # step 2 finds them built. Logged to $OUT/gemini_kernels.log; ended by its own limit at worst.
        nice -n 19 timeout 400 "$PY" -c "from colossalai.kernel.kernel_loader import CPUAdamLoader, \
FusedOptimizerLoader; CPUAdamLoader().load(); FusedOptimizerLoader().load(); print('kernels ready')" \
            >"$OUT/gemini_kernels.log" 2>&1 &
        kernels=$!
    fi
    big=(--device cuda --dtype bf16 --batch_size 32 --steps 5 --warmup 2 --breakdown)
    step sft_1b_full 100 "$PY" "${sft_1b[@]}" "${big[@]}" --out "$OUT/sft_1b_full.json"
    step sft_1b_lora 80 "$PY" "${sft_1b[@]}" "${big[@]}" --lora_rank 8 --out "$OUT/sft_1b_lora.json"
    step ppo_gemini 300 "$PY" benchmarks/gpu_strategies.py --timeout 140 --rows 64 --stages rm,ppo \
        --strategies naive,colossalai_gemini --out "$OUT/ppo_gemini"
    step strategies_sft 90 "$PY" benchmarks/gpu_strategies.py --timeout 40 --rows 64 --stages sft \
        --strategies naive,fsdp --out "$OUT/strategies"
    [ -n "${kernels:-}" ] && kill "$kernels" 2>/dev/null
fi
[ "$MODE" = --dry ] && exit 0
echo "== $failed step(s) failed; figures and logs in $OUT"
exit "$failed"
