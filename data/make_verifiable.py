#!/usr/bin/env python3
"""Generate the verifiable-reward demo data: Korean prompts whose answer is written in the prompt itself.

A tiny model (2 layers, hidden 64) cannot learn facts from a few hundred rows, but it can learn to copy.
So every prompt shows its answer and says which part to give back: the word to repeat, the word after a
star, the first / second of two words, the first / last of a list of three, or a number to repeat.
The answer is checked by `coati.rewards.exact_answer` against the row's `answer` column, and the format
(a last line `답: <answer>`) by `coati.rewards.format_check`.

Files (JSON Lines, one object per line), all written for this project:
- verifiable_train_ko.jsonl: 300 `{"prompt", "answer"}` rows for GRPO / RLOO / REINFORCE++ training;
- verifiable_eval_ko.jsonl: 60 held-out rows of the same kinds built from other words and numbers;
- verifiable_sft_ko.jsonl: 1200 `{"prompt", "completion"}` rows with prompts of their own (no SFT prompt is a
  train or eval prompt) over the words of both and numbers of their own. Half the completions are
  `답: <answer>`, half say the same answer in a sentence (`정답은 <answer>입니다.`), which exact_answer counts
  wrong for a word (it reads the `답:` line, else the whole text) and right for a number (the last number).
  An SFT model on them answers in either form, so RL has something every prompt shares to learn from the
  reward: keep the checkable form. Measured with the launcher's commands (14 SFT epochs, 60 GRPO episodes on
  two ranks): held-out exact answers 35% -> 73% greedy, and the `답:` form from 40% to all greedy answers.
Eval prompts are new: no train or SFT prompt is one, and the splits share no number. Train and SFT draw
from every word, eval from a sixth of them. The script is
deterministic (fixed seed, standard library only): `python data/make_verifiable.py` rewrites the three
files with identical bytes.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20250611
OUT = Path(__file__).resolve().parent
SIZES = {"train": 300, "eval": 60, "sft": 1200}

# Everyday nouns of 1-4 syllables, no two alike; split at random into the three files' pools.
WORDS = """
사과 포도 딸기 수박 참외 복숭아 바나나 귤 자두 체리 감자 고구마 당근 양파 오이 호박 배추 상추 마늘 버섯
김치 만두 국수 라면 김밥 떡국 비빔밥 냉면 불고기 갈비 두부 계란 우유 치즈 빵 케이크 과자 사탕 초콜릿 커피
고양이 강아지 토끼 여우 사자 호랑이 곰 늑대 코끼리 기린 원숭이 다람쥐 거북 오리 참새 독수리 펭귄 돌고래 고래 상어
연필 지우개 공책 가방 우산 시계 안경 모자 장갑 양말 신발 의자 책상 침대 거울 냉장고 세탁기 전화기 컴퓨터 자전거
바다 하늘 구름 바람 노을 무지개 산책 기차 버스 택시 비행기 배낭 지도 여권 호텔 공항 시장 도서관 병원 학교
나무 꽃잎 장미 해바라기 소나무 단풍 눈사람 모래 조개 등대 호수 계곡 폭포 들판 언덕 동굴 섬 강물 별빛 달빛
축구 야구 농구 배구 수영 태권도 탁구 등산 낚시 요가 피아노 기타 바이올린 북 노래 그림 사진 영화 소설 편지
의사 교사 가수 요리사 농부 기자 경찰 소방관 화가 작가 목수 어부 군인 판사 약사 배우 기사 미용사 간호사 선장
""".split()

# The answer word always follows a space in the prompt, so it splits into the same tokens there as after
# `답: `; a quoted or bracketed word would start with other tokens, and copying would mean translating.
COPY = [
    "다음 단어를 그대로 답하세요: {w}",
    "이 단어를 똑같이 따라 쓰세요: {w}",
    "단어 하나를 그대로 적어 주세요. 단어: {w}",
]
MARKED = [
    "별표 바로 뒤의 단어를 답하세요: 오늘 * {w} 사진을 찍었어요.",
    "별표 바로 뒤의 단어를 답하세요: 친구가 * {w} 이야기를 했어요.",
    "별표 뒤 단어만 답하세요: 시장에서 * {w} 가격을 물어봤어요.",
]
PAIR = [
    "두 단어 중 {nth} 단어를 답하세요: {a}, {b}",
    "다음 두 단어 가운데 {nth} 단어만 쓰세요: {a}, {b}",
]
LIST = [
    "다음 목록의 {nth} 단어를 답하세요: {a}, {b}, {c}",
    "목록에서 {nth} 단어는 무엇인가요? 목록: {a}, {b}, {c}",
]
NUMBER = [
    "다음 숫자를 그대로 답하세요: {n}",
    "이 숫자를 똑같이 적어 주세요: {n}",
]
KINDS = ("copy", "marked", "pair", "list", "number")
# The other way an SFT answer is written: right, but not in the `답: <answer>` form exact_answer checks (for a
# number it still passes: the last number in the text is compared).
SENTENCE = "정답은 {a}입니다."


def make_row(kind: str, words: list[str], numbers: list[int], rng: random.Random) -> dict:
    """One {"prompt", "answer"} row of the given kind, drawing words and numbers from the given pools."""
    if kind == "copy":
        w = rng.choice(words)
        return {"prompt": rng.choice(COPY).format(w=w), "answer": w}
    if kind == "marked":
        w = rng.choice(words)
        return {"prompt": rng.choice(MARKED).format(w=w), "answer": w}
    if kind == "pair":
        a, b = rng.sample(words, 2)
        first = rng.random() < 0.5
        prompt = rng.choice(PAIR).format(a=a, b=b, nth="첫 번째" if first else "두 번째")
        return {"prompt": prompt, "answer": a if first else b}
    if kind == "list":
        a, b, c = rng.sample(words, 3)
        first = rng.random() < 0.5
        prompt = rng.choice(LIST).format(a=a, b=b, c=c, nth="첫 번째" if first else "마지막")
        return {"prompt": prompt, "answer": a if first else c}
    n = rng.choice(numbers)
    return {"prompt": rng.choice(NUMBER).format(n=n), "answer": str(n)}


def build() -> dict[str, list[dict]]:
    """split name -> rows; the three splits draw from disjoint word and number pools."""
    assert len(set(WORDS)) == len(WORDS), "WORDS holds a duplicate"
    rng = random.Random(SEED)
    words = WORDS[:]
    rng.shuffle(words)
    numbers = list(range(10, 1000))
    rng.shuffle(numbers)
    # Eval prompts are new combinations over a sixth of the words; train and SFT prompts draw from every word.
    # The tiny model copies only words it has learnt to write, so SFT on other words would leave RL no right
    # answer to reinforce; and RL on words eval never asks for only teaches the policy to prefer those words
    # (measured: the training reward doubled while held-out answers got worse). What carries over is the
    # copying itself: which word of the prompt to give back. No train or SFT prompt is an eval prompt (a
    # clash is replaced), and the three splits share no number.
    n_eval = len(words) // 6
    pools = {
        "eval": (words[:n_eval], numbers[:100]),
        "sft": (words, numbers[100:500]),
        "train": (words, numbers[500:]),
    }
    out = {}
    for split in ("eval", "train", "sft"):
        split_words, split_numbers = pools[split]
        rows = []
        for i in range(SIZES[split]):
            kind = KINDS[i % len(KINDS)]  # every kind equally often
            rows.append(make_row(kind, split_words, split_numbers, rng))
        rng.shuffle(rows)
        if split == "train":
            taken = {r["prompt"] for r in out["eval"]}
            rows = [r if r["prompt"] not in taken else make_row("number", *pools["train"], rng) for r in rows]
        if split == "sft":
            taken = {r["prompt"] for r in out["train"] + out["eval"]}
            rows = [r if r["prompt"] not in taken else make_row("number", *pools["sft"], rng) for r in rows]
            # Half the SFT answers keep the checkable format, half say it in a sentence (see the module docstring).
            rows = [{"prompt": r["prompt"], "completion": f"답: {r['answer']}" if rng.random() < 0.5 else
                     SENTENCE.format(a=r["answer"])} for r in rows]
        out[split] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="folder to write the three .jsonl files to")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in build().items():
        with open(out / f"verifiable_{split}_ko.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
