#!/usr/bin/env bash
# CI for the ColossalAI stack (requirements-colossalai.txt: torch 2.5.1, transformers 4.51.3, peft 0.13.2,
# colossalai 0.5.0): the code must run there too. Builds that stack's virtual environment once per machine
# (cached under $COATI_CI_CACHE, default ~/.cache/coati-ci, keyed by a hash of the requirements file and the
# Python version), then runs the cross-stack tests and the colossalai tests in it.
# First build: about 4 minutes and 6 GB (PyPI's torch 2.5.1 for Linux is the CUDA build); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1

cache="${COATI_CI_CACHE:-$HOME/.cache/coati-ci}"
key=$( (cat requirements-colossalai.txt; python3 -V) | sha256sum | cut -c1-16)
venv="$cache/colossalai-$key"
if [ ! -f "$venv/.complete" ]; then
    echo "colossalai stack: building $venv"
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    start=$SECONDS
    "$venv/bin/python" -m pip install -q -r requirements-colossalai.txt
    touch "$venv/.complete"  # only a finished install is reused
    echo "colossalai stack: built in $((SECONDS - start)) s, $(du -sh "$venv" | cut -f1)"
    # Older builds of this stack (another requirements hash) are left for a person to remove: du -sh "$cache"/*
fi
py="$venv/bin/python"
"$py" -W ignore -c "import torch, transformers, peft, colossalai; print('colossalai stack: torch', torch.__version__, \
'transformers', transformers.__version__, 'peft', peft.__version__, 'colossalai', colossalai.__version__)"

# coati is used from this checkout, not installed into the cached environment.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# test_sampling's non-finite test and test_ppo's rollouts: on transformers 4 sampling goes through generate, where
# coati's check is a logits processor. The call_wrapper and repeats tests: Gemini's decoding loop on this stack's
# caches.
"$py" -m pytest -q -p no:cacheprovider tests/test_sft.py tests/test_ops.py tests/test_losses.py tests/test_optim.py \
    tests/test_ppo.py tests/test_tokenizer_folders.py \
    tests/test_sampling.py::test_non_finite_logits_stop_decoding_with_one_clear_error \
    tests/test_sampling.py::test_call_wrapper_decodes_through_the_wrappers_forward_at_every_step \
    tests/test_sampling.py::test_repeats_through_a_gathering_wrapper \
    tests/test_sampling.py::test_experience_maker_samples_through_the_strategys_rollout_model \
    tests/test_shared_prompts.py::test_a_grpo_rollout_scores_as_one_forward_per_row -k "not end_to_end"
"$py" -m pytest -q -p no:cacheprovider -k colossalai
