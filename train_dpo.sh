#!/usr/bin/env bash
# Stage 4: preference optimisation without a reward model (DPO, IPO, SimPO, ORPO). Edit the variables, then:
# bash train_dpo.sh. Defaults run the offline demo: starts from the stage-1 output and the shipped KoChatGPT
# ranking samples.
set -euo pipefail

NPROC=${NPROC:-1}                                  # processes (GPUs) on this machine
STRATEGY=${STRATEGY:-ddp}                          # naive | ddp | fsdp | colossalai_zero2 | colossalai_zero2_cpu | colossalai_gemini
MODEL=${MODEL:-polyglotko}                         # gpt2 | bloom | opt | llama | gptneox | polyglotko | auto
PRETRAIN=${PRETRAIN:-outputs/sft}                  # the SFT model; also the reference unless REF_MODEL is set
DATASET=${DATASET:-data/kochatgpt_rm_ko.jsonl}     # any preference format the reward model reads
LOSS_TYPE=${LOSS_TYPE:-dpo}                        # dpo | ipo | simpo | orpo
BETA=${BETA:-0.1}                                  # simpo usually wants ~2
LANGUAGE=${LANGUAGE:-ko}                           # ko | en prompt template
SAVE_PATH=${SAVE_PATH:-outputs/dpo}
BATCH_SIZE=${BATCH_SIZE:-8}                        # pairs per process
MAX_EPOCHS=${MAX_EPOCHS:-1}
LR=${LR:-2e-4}                                     # ~5e-7 for a real pretrained model
MAX_LEN=${MAX_LEN:-256}
LORA_RANK=${LORA_RANK:-0}
EVAL_INTERVAL=${EVAL_INTERVAL:-20}                 # steps between held-out accuracy checks

torchrun --standalone --nproc_per_node="$NPROC" train_dpo.py --strategy "$STRATEGY" --model "$MODEL" --pretrain "$PRETRAIN" --dataset "$DATASET" --loss_type "$LOSS_TYPE" --beta "$BETA" --language "$LANGUAGE" --save_path "$SAVE_PATH" --batch_size "$BATCH_SIZE" --max_epochs "$MAX_EPOCHS" --lr "$LR" --max_len "$MAX_LEN" --lora_rank "$LORA_RANK" --eval_interval "$EVAL_INTERVAL" --precompute_ref "$@"
