"""Instruction templates (Alpaca wording for `en`, its Korean counterpart for `ko`).

SFT, reward-model prompts and PPO prompts all go through `build_prompt`, so the policy sees in PPO
exactly the wording it was tuned on.
"""

from __future__ import annotations

TEMPLATES = {
    "en": {
        "header": "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.",
        "header_input": "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.",
        "instruction": "### Instruction:",
        "input": "### Input:",
        "response": "### Response:",
    },
    "ko": {
        "header": "아래는 작업을 설명하는 명령어입니다.\n\n명령어에 따른 요청을 적절히 완료하는 응답을 작성하세요.",
        "header_input": "아래는 작업을 설명하는 명령어입니다.\n\n명령어에 따른 요청을 적절히 완료하는 응답을 작성하세요.",
        "instruction": "### 명령어:",
        "input": "### 입력:",
        "response": "### 응답:",
    },
}
LANGUAGES = tuple(TEMPLATES)


def build_prompt(instruction: str, input_text: str = "", language: str = "ko", without_prompt: bool = False) -> str:
    """The text the model is conditioned on; the response follows it directly.

    without_prompt: the data already carries its own prompt wording, so only join instruction and input.
    """
    instruction, input_text = instruction.strip(), (input_text or "").strip()
    if without_prompt:
        return f"{instruction}\n{input_text}" if input_text else instruction
    t = TEMPLATES[language]
    if input_text:
        return (f"{t['header_input']}\n\n{t['instruction']}\n{instruction}\n\n{t['input']}\n{input_text}"
                f"\n\n{t['response']}\n")
    return f"{t['header']}\n\n{t['instruction']}\n{instruction}\n\n{t['response']}\n"
