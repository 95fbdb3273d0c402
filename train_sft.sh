#!/usr/bin/env bash
# Stage 1: supervised instruction tuning. Edit the variables, then: bash train_sft.sh
# Defaults run the offline demo (tiny GPT-NeoX, shipped KoChatGPT-style samples) on CPU in about a minute.
set -euo pipefail

NPROC=${NPROC:-1}                                  # processes (GPUs) on this machine
STRATEGY=${STRATEGY:-ddp}                          # naive | ddp | fsdp | colossalai_zero2 | colossalai_zero2_cpu | colossalai_gemini
MODEL=${MODEL:-polyglotko}                         # gpt2 | bloom | opt | llama | gptneox | polyglotko | auto
PRETRAIN=${PRETRAIN:-outputs/tiny-polyglotko}      # e.g. EleutherAI/polyglot-ko-1.3b
DATASET=${DATASET:-data/kochatgpt_sft_ko.jsonl}    # JSON array / JSONL / parquet / datasets folder / hub name
INSTRUCTION_STR=${INSTRUCTION_STR:-prompt}         # key of the instruction (Alpaca: instruction)
OUTPUT_STR=${OUTPUT_STR:-completion}               # key of the response (Alpaca: output)
LANGUAGE=${LANGUAGE:-ko}                           # ko | en prompt template
SAVE_PATH=${SAVE_PATH:-outputs/sft}
BATCH_SIZE=${BATCH_SIZE:-8}                        # per process
ACCUMULATION_STEPS=${ACCUMULATION_STEPS:-1}
MAX_EPOCHS=${MAX_EPOCHS:-12}
LR=${LR:-3e-3}                                     # ~2e-5 for a real pretrained model
MAX_LEN=${MAX_LEN:-512}                           # rows longer than this are cut (or dropped if the prompt alone fills it)
LORA_RANK=${LORA_RANK:-0}                          # e.g. 8 for a billion-parameter model

torchrun --standalone --nproc_per_node="$NPROC" train_sft.py --strategy "$STRATEGY" --model "$MODEL" --pretrain "$PRETRAIN" --dataset "$DATASET" --instruction_str "$INSTRUCTION_STR" --output_str "$OUTPUT_STR" --language "$LANGUAGE" --save_path "$SAVE_PATH" --batch_size "$BATCH_SIZE" --accumulation_steps "$ACCUMULATION_STEPS" --max_epochs "$MAX_EPOCHS" --lr "$LR" --max_len "$MAX_LEN" --lora_rank "$LORA_RANK" "$@"
