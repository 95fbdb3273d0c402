#!/usr/bin/env bash
# Stage 2: reward-model training. Edit the variables, then: bash train_rm.sh
# Defaults run the offline demo: starts from the stage-1 output and the shipped KoChatGPT ranking samples.
set -euo pipefail

NPROC=${NPROC:-1}                                  # processes (GPUs) on this machine
STRATEGY=${STRATEGY:-ddp}                          # naive | ddp | fsdp | colossalai_zero2 | colossalai_zero2_cpu | colossalai_gemini
MODEL=${MODEL:-polyglotko}                         # gpt2 | bloom | opt | llama | gptneox | polyglotko | auto
PRETRAIN=${PRETRAIN:-outputs/sft}                  # usually the SFT model, or a base model
DATASET=${DATASET:-data/kochatgpt_rm_ko.jsonl}     # ranking rows, prompt/chosen/rejected, or a hub name (Dahoas/rm-static)
LOSS_FN=${LOSS_FN:-log_sig}                        # log_sig | log_exp
LANGUAGE=${LANGUAGE:-ko}                           # ko | en prompt template
SAVE_PATH=${SAVE_PATH:-outputs/rm}
BATCH_SIZE=${BATCH_SIZE:-8}                        # pairs per process
MAX_EPOCHS=${MAX_EPOCHS:-2}
LR=${LR:-5e-4}                                     # ~5e-6 for a real pretrained model
MAX_LEN=${MAX_LEN:-256}
LORA_RANK=${LORA_RANK:-0}
EVAL_INTERVAL=${EVAL_INTERVAL:-20}                 # steps between held-out accuracy checks

torchrun --standalone --nproc_per_node="$NPROC" train_reward_model.py --strategy "$STRATEGY" --model "$MODEL" --pretrain "$PRETRAIN" --dataset "$DATASET" --loss_fn "$LOSS_FN" --language "$LANGUAGE" --save_path "$SAVE_PATH" --batch_size "$BATCH_SIZE" --max_epochs "$MAX_EPOCHS" --lr "$LR" --max_len "$MAX_LEN" --lora_rank "$LORA_RANK" --eval_interval "$EVAL_INTERVAL" "$@"
