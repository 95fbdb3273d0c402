"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing loaded, nothing touched."""

from __future__ import annotations

import hashlib
import math
import os

import pytest
from conftest import run_script, write_json

GOOD_SFT = [{"instruction": "안녕?", "output": "안녕하세요."}] * 4


def _tree_digest(folder) -> dict:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def _refused(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in res.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def gpt2(tiny_models):
    return tiny_models("gpt2")


@pytest.fixture(scope="module")
def rm(tiny_models, tmp_path_factory):
    """A reward-model folder: the tiny GPT-2 with a one-output score head, as train_reward_model.py saves it."""
    import shutil

    from transformers import AutoModelForSequenceClassification

    base, out = tiny_models("gpt2"), tmp_path_factory.mktemp("rm")
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(out)
    for f in os.listdir(base):
        if f.startswith("tokenizer"):
            shutil.copy(os.path.join(base, f), out)
    return str(out)


def sft(tmp_path, gpt2, *extra, dataset=None):
    dataset = dataset or write_json(tmp_path / "ok.json", GOOD_SFT)
    return run_script(["train_sft.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                       "--dataset", str(dataset), "--save_path", str(tmp_path / "out"), *extra], timeout=120)


def test_missing_dataset_file(tmp_path, gpt2):
    _refused(sft(tmp_path, gpt2, dataset=tmp_path / "nope.json"), "nope.json does not exist")


def test_empty_dataset_file(tmp_path, gpt2):
    (tmp_path / "empty.jsonl").write_text("\n")
    _refused(sft(tmp_path, gpt2, dataset=tmp_path / "empty.jsonl"), "empty.jsonl is empty")
    (tmp_path / "arr.json").write_text("[]")
    _refused(sft(tmp_path, gpt2, dataset=tmp_path / "arr.json"), "holds no rows")


def test_broken_json_array_names_line_and_column(tmp_path, gpt2):
    (tmp_path / "bad.json").write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": 1}\n]')
    _refused(sft(tmp_path, gpt2, dataset=tmp_path / "bad.json"), "bad.json line 3 column", "invalid JSON")


def test_broken_json_lines_names_the_line(tmp_path, gpt2):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n')
    _refused(sft(tmp_path, gpt2, dataset=tmp_path / "bad.jsonl"), "bad.jsonl line 2")


def test_missing_key_names_it_and_the_keys_found(tmp_path, gpt2):
    data = write_json(tmp_path / "k.json", [{"prompt": "q", "completion": "a"}])
    _refused(sft(tmp_path, gpt2, dataset=data), "row 0 has no key 'instruction'", "keys found: prompt, completion",
             "--instruction_str")


def test_inconsistent_ranking_rows(tmp_path, gpt2):
    rows = [{"prompt": "q", "completion_0": "a", "completion_1": "b", "ranking": [0, 0]}] * 3
    data = write_json(tmp_path / "rm.json", rows)
    res = run_script(["train_reward_model.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                      "--dataset", data, "--save_path", str(tmp_path / "rm")], timeout=120)
    _refused(res, "row 0", "'ranking' [0, 0] is not an order of the completions 0..1 (read with --ranking_order slots)")
    res = run_script(["train_reward_model.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                      "--dataset", data, "--ranking_order", "ranks", "--save_path", str(tmp_path / "rm")], timeout=120)
    _refused(res, "row 0", "same rank")


def test_model_paths_that_hold_no_model(tmp_path, gpt2):
    _refused(sft(tmp_path, str(tmp_path / "missing-model")), "--pretrain", "does not exist")
    (tmp_path / "emptydir").mkdir()
    _refused(sft(tmp_path, str(tmp_path / "emptydir")), "holds no model")


def test_family_mismatch(tmp_path, gpt2):
    res = run_script(["train_sft.py", "--strategy", "naive", "--model", "llama", "--pretrain", gpt2, "--dataset",
                      write_json(tmp_path / "ok.json", GOOD_SFT), "--save_path", str(tmp_path / "o")], timeout=120)
    _refused(res, "--model llama expects model_type 'llama'", "says 'gpt2'")


def test_flag_combinations_that_cannot_work(tmp_path, gpt2):
    _refused(sft(tmp_path, gpt2, "--lora_rank", "-1"), "--lora_rank")
    _refused(sft(tmp_path, gpt2, "--resume_from", "latest"), "no checkpoint-<step> folder")
    (tmp_path / "legacy.pt").write_bytes(b"x")
    res = run_script(["train_prompts.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                      "--rm_path", str(tmp_path / "legacy.pt"), "--prompt_dataset",
                      write_json(tmp_path / "p.json", [{"instruction": "hi"}]), "--save_path", str(tmp_path / "p")],
                     timeout=120)
    _refused(res, "also give --rm_pretrain")
    res = run_script(["train_prompts.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                      "--prompt_dataset", write_json(tmp_path / "p.json", [{"instruction": "hi"}])], timeout=120)
    _refused(res, "--rm_path or --reward_fn is required")


def test_refused_run_leaves_existing_output_byte_identical(tmp_path, gpt2):
    good = sft(tmp_path, gpt2, "--max_epochs", "1", "--batch_size", "2")
    assert good.returncode == 0, good.stderr[-2000:]
    before = _tree_digest(tmp_path / "out")
    assert "model.safetensors" in before
    (tmp_path / "broken.json").write_text("[{")
    _refused(sft(tmp_path, gpt2, dataset=tmp_path / "broken.json"), "broken.json")
    assert _tree_digest(tmp_path / "out") == before


def test_ppo_prompt_file_without_the_prompt_key_names_flag_and_file(tmp_path, gpt2, rm):
    data = write_json(tmp_path / "prompts.json", [{"question": "안녕?"}] * 3)
    res = run_script(["train_prompts.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                      "--rm_path", rm, "--prompt_dataset", data, "--save_path", str(tmp_path / "out")], timeout=120)
    line = _refused(res, f"--prompt_dataset {data} row 0 has no key 'instruction'", "keys found: question",
                    "--ppo_instruction_str")
    assert "--dataset" not in line
    assert not (tmp_path / "out").exists()


def test_a_model_of_the_other_kind_is_refused_before_loading(tmp_path, gpt2, rm):
    """A causal LM as --rm_path would score with a random head; a reward model as --pretrain would generate from
    an LM head it never had. Both load without an error, so the scripts read config.json first."""
    prompts = write_json(tmp_path / "p.json", [{"instruction": "hi"}])

    def ppo(pretrain, rm_path):
        return run_script(["train_prompts.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", pretrain,
                           "--rm_path", rm_path, "--prompt_dataset", prompts, "--save_path", str(tmp_path / "out")],
                          timeout=120)

    _refused(ppo(gpt2, gpt2), f"--rm_path {gpt2} is a causal language model (GPT2LMHeadModel in its config.json)",
             "score head would start random", "train_reward_model.py")
    _refused(ppo(rm, rm), f"--pretrain {rm} is a reward model (GPT2ForSequenceClassification")
    _refused(sft(tmp_path, rm), f"--pretrain {rm} is a reward model", "train_sft.py")
    assert not (tmp_path / "out").exists()
    # An adapter folder (--no-merge_lora) holds no config.json: it is named for what it is, not "holds no model".
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA"})
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    _refused(sft(tmp_path, str(adapter)), f"--pretrain {adapter} is a PEFT adapter folder", "--merge_lora")
    _refused(run_script(["inference.py", "--model_path", str(adapter), "--prompt", "안녕?"]),
             f"--model_path {adapter} is a PEFT adapter folder")
    # The reward-model folder is what --rm_path takes, and inference.py scores a pair with it.
    res = run_script(["inference.py", "--model_path", rm, "--prompt", "안녕?", "--answer", "안녕하세요."])
    assert res.returncode == 0, res.stderr[-2000:]
    assert math.isfinite(float(res.stdout.strip().splitlines()[-1]))


def test_sampling_flags_that_cannot_work(tmp_path, gpt2, rm):
    res = run_script(["train_prompts.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                      "--rm_path", rm, "--prompt_dataset", write_json(tmp_path / "p.json", [{"instruction": "hi"}]),
                      "--save_path", str(tmp_path / "out"), "--temperature", "0"], timeout=120)
    _refused(res, "--temperature must be positive, got 0.0")
    assert not (tmp_path / "out").exists()
    _refused(run_script(["inference.py", "--model_path", gpt2, "--prompt", "안녕?", "--max_new_tokens", "0"]),
             "--max_new_tokens must be positive")
    _refused(run_script(["inference.py", "--model_path", gpt2, "--prompt", "안녕?", "--top_p", "1.5"]),
             "--top_p must be in (0, 1]")
    # greedy decoding reads no sampling flag, so a zero temperature is no error there
    res = run_script(["inference.py", "--model_path", gpt2, "--prompt", "안녕?", "--max_new_tokens", "3", "--greedy",
                      "--temperature", "0"])
    assert res.returncode == 0, res.stderr[-2000:]


# -- boolean flags, logging backends, chat flags ------------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    ([], False), (["--need_optim_ckpt"], True), (["--need_optim_ckpt", "True"], True),
    (["--need_optim_ckpt", "False"], False), (["--need_optim_ckpt", "false"], False),
    (["--need_optim_ckpt", "yes"], True), (["--need_optim_ckpt", "0"], False),
])
def test_boolean_flags_take_true_or_false_after_them(argv, expected):
    from coati.cli import base_parser

    args = base_parser("t").parse_args([*argv, "--seed", "3"])
    assert args.need_optim_ckpt is expected and args.seed == 3


def test_every_store_true_flag_takes_a_value_and_optional_flags_still_work(capsys):
    from coati.cli import base_parser

    p = base_parser("t")
    p.add_argument("--offload_frozen", action="store_true")  # as a script adds its own
    args = p.parse_args(["--without_prompt", "False", "--use_wandb", "--offload_frozen", "True",
                         "--grad_checkpoint", "no"])
    assert (args.without_prompt, args.use_wandb, args.offload_frozen, args.grad_checkpoint) == (False, True, True,
                                                                                                  False)
    assert (p.parse_args([]).merge_lora, p.parse_args(["--no-merge_lora"]).merge_lora) == (True, False)
    assert p.parse_args(["--merge_lora", "False"]).merge_lora is False
    assert p.parse_args(["--no-group_by_length"]).group_by_length is False
    assert p.parse_args(["--group_by_length"]).group_by_length is True
    with pytest.raises(SystemExit):
        p.parse_args(["--need_optim_ckpt", "maybe"])
    assert "--need_optim_ckpt: expected True or False" in capsys.readouterr().err


def test_chat_flags_defaults_and_choices():
    from coati.cli import base_parser

    args = base_parser("t").parse_args([])
    assert (args.chat_template, args.messages_str, args.train_on) == (None, "messages", "all")
    args = base_parser("t").parse_args(["--chat_template", "chatml", "--messages_str", "turns", "--train_on", "last"])
    assert (args.chat_template, args.messages_str, args.train_on) == ("chatml", "turns", "last")
    with pytest.raises(SystemExit):
        base_parser("t").parse_args(["--train_on", "first"])


def test_use_wandb_without_wandb_is_one_line_before_anything_else(monkeypatch):
    import importlib.util

    from coati.cli import base_parser, check_common
    from coati.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    args = base_parser("t").parse_args(["--use_wandb"])  # no --pretrain either: the wandb line comes first
    with pytest.raises(UserError, match="^--use_wandb needs the wandb package, which is not installed; pip install "
                                        "wandb or leave out --use_wandb$"):
        check_common(args)
    with pytest.raises(UserError, match="--pretrain is required"):
        check_common(base_parser("t").parse_args(["--use_wandb", "False"]))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match="--pretrain is required"):
        check_common(base_parser("t").parse_args(["--use_wandb"]))


def test_bad_chat_template_flag_is_refused_before_loading(tmp_path, gpt2):
    _refused(sft(tmp_path, gpt2, "--chat_template", str(tmp_path / "none.jinja")),
             "--chat_template", "neither one of tokenizer, ko, en, chatml nor an existing Jinja file")
    assert not (tmp_path / "out").exists()


def test_under_torchrun_a_user_error_is_printed_once_and_every_rank_exits_non_zero(tmp_path, gpt2):
    res = run_script(["train_sft.py", "--strategy", "ddp", "--model", "gpt2", "--pretrain", gpt2, "--dataset",
                      str(tmp_path / "missing.json"), "--save_path", str(tmp_path / "out")], nproc=2, timeout=180)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: --dataset {tmp_path / 'missing.json'} does not exist; give a .json/.jsonl/.parquet "
                      "file, a folder saved by datasets, or a hub name like Dahoas/rm-static"], res.stderr[-2000:]


LATER_RANK = """
import signal, sys
import coati.errors as e
e.REPORT_GRACE_S = {grace}
signal.signal(signal.SIGTERM, lambda *_: None)  # as a checkpointer's handler: a SIGTERM only noted

@e.exit_on_user_error
def main():
    print("checked", flush=True)
    raise e.UserError("bad flag")

main()
"""


def test_a_later_rank_leaves_the_report_to_rank_0_and_reports_only_what_rank_0_did_not_meet():
    """Under torchrun the first rank to exit takes the others down, so rank 1 must not exit before rank 0 has
    printed the line: it waits, with SIGTERM's default action back, so the launcher's stop (sent when rank 0
    exits) ends it at once and silently. Left alone, it prints the mistake itself, naming its rank."""
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, RANK="1", PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    alone = subprocess.run([sys.executable, "-c", LATER_RANK.format(grace=0.2)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert alone.returncode == 2 and alone.stderr.strip() == "error: bad flag (rank 1)"
    rank1 = subprocess.Popen([sys.executable, "-c", LATER_RANK.format(grace=120)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert rank1.stdout.readline().strip() == "checked"
    time.sleep(0.5)  # inside the wait
    rank1.terminate()  # what torchrun sends when rank 0 has failed
    assert rank1.wait(timeout=20) == -signal.SIGTERM
    assert rank1.stderr.read() == ""


def test_inference_takes_true_or_false_after_its_boolean_flags():
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    import inference

    base = ["--model_path", "m"]
    assert inference.parse_args([*base, "--greedy", "True"]).greedy is True
    assert inference.parse_args([*base, "--greedy", "False", "--without_prompt"]).greedy is False
    assert inference.parse_args([*base, "--without_prompt", "false"]).without_prompt is False
    assert inference.parse_args([*base, "--chat_template", "chatml"]).chat_template == "chatml"


def test_ranking_order_is_printed_and_checked(tmp_path, gpt2):
    row = {"prompt": "q", "completion_0": "zero", "completion_1": "one", "completion_2": "two", "ranking": [1, 2, 0]}
    data = write_json(tmp_path / "r.json", [row] * 4)
    for order in ("slots", "ranks"):
        res = run_script(["train_reward_model.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2,
                          "--dataset", data, "--ranking_order", order, "--eval_split", "0",
                          "--save_path", str(tmp_path / order), "--max_epochs", "1", "--batch_size", "12"],
                         timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert f"[rm] ranking rows read with --ranking_order {order}: " in res.stderr
        assert f"[rm] --dataset {data}: read 4 rows, used 4, truncated 0, dropped 0" in res.stderr
    res = run_script(["train_reward_model.py", "--pretrain", gpt2, "--dataset", data, "--ranking_order", "best"])
    assert res.returncode == 2 and "--ranking_order: invalid choice: 'best'" in res.stderr

# -- train_dpo.py ---------------------------------------------------------------------------------------------------
def dpo(tmp_path, gpt2, *extra):
    data = write_json(tmp_path / "pairs.json", [{"prompt": "안녕?", "chosen": "안녕하세요.", "rejected": "뭐?"}] * 4)
    return run_script(["train_dpo.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2, "--dataset",
                       data, "--save_path", str(tmp_path / "out"), *extra], timeout=120)


@pytest.mark.parametrize("flags, fragments", [
    (["--beta", "0"], ["--beta and --orpo_alpha must be positive, got 0.0"]),
    (["--loss_type", "orpo", "--orpo_alpha", "-1"], ["--orpo_alpha must be positive"]),
    (["--label_smoothing", "0.5"], ["--label_smoothing must be in [0, 0.5), got 0.5"]),
    (["--loss_type", "ipo", "--label_smoothing", "0.1"], ["--label_smoothing applies to --loss_type dpo and simpo"]),
    (["--loss_type", "simpo", "--simpo_gamma", "-1"], ["--simpo_gamma and --sft_coef must be >= 0"]),
    (["--sft_coef", "-0.5"], ["--simpo_gamma and --sft_coef must be >= 0"]),
    (["--eval_split", "1"], ["--eval_split must be in [0, 1), got 1.0"]),
    (["--ranking_order", "rows"], None),
    (["--batch_size", "0"], ["--batch_size must be positive"]),
    (["--resume_from", "latest"], ["no checkpoint-<step> folder"]),
    (["--chat_template", "none.jinja"], ["--chat_template", "neither one of"]),
])
def test_dpo_bad_flags_are_refused_before_loading(tmp_path, gpt2, flags, fragments):
    res = dpo(tmp_path, gpt2, *flags)
    if fragments is None:  # argparse's own refusal of a choice
        assert res.returncode == 2 and "invalid choice: 'rows'" in res.stderr
    else:
        _refused(res, *fragments)
    assert not (tmp_path / "out").exists()


def test_dpo_reference_flags(tmp_path, gpt2, rm):
    _refused(dpo(tmp_path, gpt2, "--ref_model", str(tmp_path / "nope")), "--ref_model", "does not exist")
    _refused(dpo(tmp_path, gpt2, "--ref_model", rm), f"--ref_model {rm} is a reward model")
    _refused(dpo(tmp_path, rm), f"--pretrain {rm} is a reward model")
    _refused(dpo(tmp_path, gpt2, "--ref_model", rm, "--lora_rank", "4"), "with --lora_rank 4: the reference is "
             "--pretrain with the adapters off")
    assert not (tmp_path / "out").exists()
    # a reference-free loss says once that it ignores the reference flags, and trains
    res = dpo(tmp_path, gpt2, "--loss_type", "orpo", "--ref_model", rm, "--precompute_ref", "--max_epochs", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count("--loss_type orpo uses no reference model: --ref_model and --precompute_ref are "
                            "ignored") == 1


def test_dpo_data_problems_name_the_file(tmp_path, gpt2):
    bad = write_json(tmp_path / "bad.json", [{"question": "q", "answer": "a"}])
    res = run_script(["train_dpo.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2, "--dataset",
                      bad, "--save_path", str(tmp_path / "out")], timeout=120)
    _refused(res, "cannot tell the preference format from the keys question, answer")
    convo = write_json(tmp_path / "chat.json", [{"prompt": [{"role": "user", "content": "안녕?"}], "chosen": "네",
                                                 "rejected": "뭐"}] * 2)
    res = run_script(["train_dpo.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", gpt2, "--dataset",
                      convo, "--save_path", str(tmp_path / "out")], timeout=120)
    _refused(res, "the data holds conversations, and the tokenizer has no chat template of its own")
    assert not (tmp_path / "out").exists()
