#!/usr/bin/env bash
# The main job: SFT -> reward model -> PPO on the shipped samples with a tiny model, on CPU, in minutes, and DPO
# from the same SFT model on the same preferences.
# Everything lands in outputs/ (model folders, metrics.jsonl, PNG plots); a summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

python -m coati.kit tiny --model polyglotko --out outputs/tiny-polyglotko
bash train_sft.sh
bash train_rm.sh
bash train_dpo.sh
bash train_prompts.sh
python inference.py --model_path outputs/ppo --prompt "주말에 집에서 할 만한 취미를 추천해 주세요." --max_new_tokens 60
python -m coati.summary outputs/sft outputs/rm outputs/ppo outputs/dpo
