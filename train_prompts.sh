#!/usr/bin/env bash
# Stage 3: RL of the SFT model. Edit the variables, then: bash train_prompts.sh
# ALGO=ppo (default) runs the offline demo's PPO: actor from outputs/sft, reward model and critic from outputs/rm.
# ALGO=grpo | rloo | reinforce_pp runs a critic-free algorithm on the verifiable task (data/verifiable_*_ko.jsonl),
# rewarded by the exact_answer function, from an SFT model trained on its SFT rows (outputs/sft-verifiable):
#   DATASET=data/verifiable_sft_ko.jsonl SAVE_PATH=outputs/sft-verifiable MAX_EPOCHS=14 BATCH_SIZE=16 bash train_sft.sh
#   ALGO=grpo bash train_prompts.sh
# Held-out prompts (EVAL_DATASET) are answered greedily and sampled, and scored before and after training.
# Set RM_PATH, REWARD_FN, EVAL_DATASET or PRETRAIN_DATASET to an empty value to leave that part out.
set -euo pipefail

ALGO=${ALGO:-ppo}                                      # ppo | grpo | rloo | reinforce_pp
NPROC=${NPROC:-1}                                      # processes (GPUs) on this machine
STRATEGY=${STRATEGY:-ddp}                              # naive | ddp | fsdp | colossalai_zero2 | colossalai_zero2_cpu | colossalai_gemini
MODEL=${MODEL:-polyglotko}                             # actor family: gpt2 | bloom | opt | llama | gptneox | polyglotko | auto
PPO_INSTRUCTION_STR=${PPO_INSTRUCTION_STR:-prompt}     # key of the prompt (InstructionWild-style files: instruction)
LANGUAGE=${LANGUAGE:-ko}
EVAL_INTERVAL=${EVAL_INTERVAL:-0}                      # also score EVAL_DATASET every N episodes (0: before and after only)
LORA_RANK=${LORA_RANK:-0}
if [ "$ALGO" = ppo ]; then
  PRETRAIN=${PRETRAIN:-outputs/sft}                    # the SFT model
  RM_PATH=${RM_PATH-outputs/rm}                       # train_reward_model.py output (or a Coati .pt with --rm_pretrain)
  REWARD_FN=${REWARD_FN-}                             # reward written as code, summed with the reward model's score
  PROMPT_DATASET=${PROMPT_DATASET:-data/kochatgpt_ppo_ko.jsonl}
  EVAL_DATASET=${EVAL_DATASET-data/kochatgpt_ppo_eval_ko.jsonl}  # 60 prompts PPO never trains on
  PRETRAIN_DATASET=${PRETRAIN_DATASET-data/kochatgpt_sft_ko.jsonl}   # SFT rows for the ptx loss
  SAVE_PATH=${SAVE_PATH:-outputs/ppo}
  NUM_EPISODES=${NUM_EPISODES:-20}
  EXPERIENCE_BATCH_SIZE=${EXPERIENCE_BATCH_SIZE:-16}   # prompts per rollout batch
  NUM_GENERATIONS=${NUM_GENERATIONS:-1}                # answers per prompt
  ACTOR_LR=${ACTOR_LR:-2e-4}                           # ~1e-6 for a real pretrained model
  CRITIC_LR=${CRITIC_LR:-1e-3}                         # ~1e-5 for a real pretrained model
  MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-40}
  KL_COEF=${KL_COEF:-0.05}                             # per-token KL penalty in the reward
else
  PRETRAIN=${PRETRAIN:-outputs/sft-verifiable}
  RM_PATH=${RM_PATH-}                                 # a reward model too (optional; its score is added)
  REWARD_FN=${REWARD_FN-exact_answer}                 # FILE.py:NAME, package.module:NAME or a shipped name
  PROMPT_DATASET=${PROMPT_DATASET:-data/verifiable_train_ko.jsonl}
  EVAL_DATASET=${EVAL_DATASET-data/verifiable_eval_ko.jsonl}
  PRETRAIN_DATASET=${PRETRAIN_DATASET-}
  SAVE_PATH=${SAVE_PATH:-outputs/$ALGO}
  NUM_EPISODES=${NUM_EPISODES:-60}
  EXPERIENCE_BATCH_SIZE=${EXPERIENCE_BATCH_SIZE:-8}
  NUM_GENERATIONS=${NUM_GENERATIONS:-8}
  ACTOR_LR=${ACTOR_LR:-1e-4}                           # ~1e-6 for a real pretrained model
  CRITIC_LR=${CRITIC_LR:-}                             # no critic
  MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-12}                 # the answers are a few tokens
  if [ "$ALGO" = reinforce_pp ]; then KL_COEF=${KL_COEF:-0.05}; else KL_COEF=${KL_COEF:-0}; fi  # 0: no reference model
fi
NUM_COLLECT_STEPS=${NUM_COLLECT_STEPS:-2}              # rollout batches per episode
NUM_UPDATE_STEPS=${NUM_UPDATE_STEPS:-2}                # passes over the buffer per episode
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-16}
PTX_BATCH_SIZE=${PTX_BATCH_SIZE:-4}
PTX_COEF=${PTX_COEF:-0.1}                              # the original guide used 0.9
INSTRUCTION_STR=${INSTRUCTION_STR:-prompt}             # keys of the ptx rows
OUTPUT_STR=${OUTPUT_STR:-completion}

# The flags that only some runs take
EXTRA=()
[ -n "$RM_PATH" ] && EXTRA+=(--rm_path "$RM_PATH")
[ -n "$REWARD_FN" ] && EXTRA+=(--reward_fn "$REWARD_FN")
[ -n "$EVAL_DATASET" ] && EXTRA+=(--eval_dataset "$EVAL_DATASET" --eval_interval "$EVAL_INTERVAL")
[ -n "$CRITIC_LR" ] && EXTRA+=(--critic_lr "$CRITIC_LR")
[ -n "$PRETRAIN_DATASET" ] && EXTRA+=(--pretrain_dataset "$PRETRAIN_DATASET" --instruction_str "$INSTRUCTION_STR" --output_str "$OUTPUT_STR" --ptx_batch_size "$PTX_BATCH_SIZE" --ptx_coef "$PTX_COEF")

torchrun --standalone --nproc_per_node="$NPROC" train_prompts.py --algo "$ALGO" --strategy "$STRATEGY" --model "$MODEL" --pretrain "$PRETRAIN" --prompt_dataset "$PROMPT_DATASET" --ppo_instruction_str "$PPO_INSTRUCTION_STR" --language "$LANGUAGE" --save_path "$SAVE_PATH" --num_episodes "$NUM_EPISODES" --num_collect_steps "$NUM_COLLECT_STEPS" --num_update_steps "$NUM_UPDATE_STEPS" --experience_batch_size "$EXPERIENCE_BATCH_SIZE" --num_generations "$NUM_GENERATIONS" --train_batch_size "$TRAIN_BATCH_SIZE" --kl_coef "$KL_COEF" --actor_lr "$ACTOR_LR" --max_new_tokens "$MAX_NEW_TOKENS" --lora_rank "$LORA_RANK" "${EXTRA[@]}" "$@"
