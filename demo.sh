#!/usr/bin/env bash
# The main job: SFT -> reward model -> PPO on the shipped samples with a tiny model, on CPU, in minutes; DPO
# from the same SFT model on the same preferences, and a short GRPO run against the same reward model. PPO and
# GRPO score 60 held-out prompts before and after.
# Everything lands in outputs/ (model folders, metrics.jsonl, PNG plots); a summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

python -m coati.kit tiny --model polyglotko --out outputs/tiny-polyglotko
bash train_sft.sh
bash train_rm.sh
bash train_dpo.sh
bash train_prompts.sh
ALGO=grpo PRETRAIN=outputs/sft RM_PATH=outputs/rm REWARD_FN= PROMPT_DATASET=data/kochatgpt_ppo_ko.jsonl \
    EVAL_DATASET=data/kochatgpt_ppo_eval_ko.jsonl NUM_EPISODES=6 NUM_COLLECT_STEPS=2 EXPERIENCE_BATCH_SIZE=4 \
    NUM_GENERATIONS=4 ACTOR_LR=2e-4 MAX_NEW_TOKENS=40 SAVE_PATH=outputs/grpo bash train_prompts.sh
python inference.py --model_path outputs/ppo --prompt "주말에 집에서 할 만한 취미를 추천해 주세요." --max_new_tokens 60
python -m coati.summary outputs/sft outputs/rm outputs/dpo outputs/ppo outputs/grpo
