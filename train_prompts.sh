#!/usr/bin/env bash
# Stage 3: PPO against the reward model. Edit the variables, then: bash train_prompts.sh
# Defaults run the offline demo: actor from outputs/sft, reward model and critic from outputs/rm.
set -euo pipefail

NPROC=${NPROC:-1}                                      # processes (GPUs) on this machine
STRATEGY=${STRATEGY:-ddp}                              # naive | ddp | fsdp | colossalai_zero2 | colossalai_zero2_cpu | colossalai_gemini
MODEL=${MODEL:-polyglotko}                             # actor family: gpt2 | bloom | opt | llama | gptneox | polyglotko | auto
PRETRAIN=${PRETRAIN:-outputs/sft}                      # the SFT model
RM_PATH=${RM_PATH:-outputs/rm}                         # train_reward_model.py output (or a Coati .pt with --rm_pretrain)
PROMPT_DATASET=${PROMPT_DATASET:-data/kochatgpt_ppo_ko.jsonl}
PPO_INSTRUCTION_STR=${PPO_INSTRUCTION_STR:-prompt}     # key of the prompt (InstructionWild-style files: instruction)
PRETRAIN_DATASET=${PRETRAIN_DATASET:-data/kochatgpt_sft_ko.jsonl}   # SFT rows for the ptx loss
INSTRUCTION_STR=${INSTRUCTION_STR:-prompt}             # keys of the ptx rows
OUTPUT_STR=${OUTPUT_STR:-completion}
LANGUAGE=${LANGUAGE:-ko}
SAVE_PATH=${SAVE_PATH:-outputs/ppo}
NUM_EPISODES=${NUM_EPISODES:-20}
NUM_COLLECT_STEPS=${NUM_COLLECT_STEPS:-2}              # rollout batches per episode
NUM_UPDATE_STEPS=${NUM_UPDATE_STEPS:-2}                # passes over the buffer per episode
EXPERIENCE_BATCH_SIZE=${EXPERIENCE_BATCH_SIZE:-16}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-16}
PTX_BATCH_SIZE=${PTX_BATCH_SIZE:-4}
PTX_COEF=${PTX_COEF:-0.1}                              # the original guide used 0.9
KL_COEF=${KL_COEF:-0.05}
ACTOR_LR=${ACTOR_LR:-2e-4}                             # ~1e-6 for a real pretrained model
CRITIC_LR=${CRITIC_LR:-1e-3}                           # ~1e-5 for a real pretrained model
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-40}
LORA_RANK=${LORA_RANK:-0}

torchrun --standalone --nproc_per_node="$NPROC" train_prompts.py --strategy "$STRATEGY" --model "$MODEL" --pretrain "$PRETRAIN" --rm_path "$RM_PATH" --prompt_dataset "$PROMPT_DATASET" --ppo_instruction_str "$PPO_INSTRUCTION_STR" --pretrain_dataset "$PRETRAIN_DATASET" --instruction_str "$INSTRUCTION_STR" --output_str "$OUTPUT_STR" --language "$LANGUAGE" --save_path "$SAVE_PATH" --num_episodes "$NUM_EPISODES" --num_collect_steps "$NUM_COLLECT_STEPS" --num_update_steps "$NUM_UPDATE_STEPS" --experience_batch_size "$EXPERIENCE_BATCH_SIZE" --train_batch_size "$TRAIN_BATCH_SIZE" --ptx_batch_size "$PTX_BATCH_SIZE" --ptx_coef "$PTX_COEF" --kl_coef "$KL_COEF" --actor_lr "$ACTOR_LR" --critic_lr "$CRITIC_LR" --max_new_tokens "$MAX_NEW_TOKENS" --lora_rank "$LORA_RANK" "$@"
