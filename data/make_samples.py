#!/usr/bin/env python3
"""Generate the small demo data sets shipped in ``data/``.

Every sentence here was written for this project; nothing is copied from an existing data set.
The hand-written word lists, tips and sentences live in ``data/sample_words/*.json``, one file per
family; this script only combines them. The prompt templates in the tokenizer corpus come from
``coati.dataset.templates``, so the tokenizer learns the exact text that training feeds it.
The script is deterministic: ``python data/make_samples.py`` rewrites all files byte-for-byte
identically.

The aim: a tiny randomly initialised model (2 layers, hidden 64) must be
able to learn the preference from surface text in a few CPU minutes.  So
texts are short and the "good" answers share a consistent style (polite
endings, an opener, two or three concrete tips, a friendly closer), while the
"bad" answers are curt / rude / dismissive and the "middle" answers (ranking
data only) are short, neutral and vague.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

SEED = 20240607
OUT = Path(__file__).resolve().parent
WORDS = OUT / "sample_words"

# the templates come from this repository's coati, wherever the script is run from
sys.path.insert(0, str(OUT.parent))
from coati.dataset.templates import TEMPLATES, build_prompt  # noqa: E402


def load_words(family: str) -> dict:
    return json.loads((WORDS / f"{family}.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------
# Korean helpers
# ---------------------------------------------------------------------------


def _jong(ch: str) -> int:
    """Final-consonant index of a Hangul syllable (0 = none, -1 = not Hangul)."""
    if "가" <= ch <= "힣":
        return (ord(ch) - 0xAC00) % 28
    return -1


_JOSA = {
    "을를": ("을", "를"),
    "은는": ("은", "는"),
    "이가": ("이", "가"),
    "과와": ("과", "와"),
    "이에요": ("이에요", "예요"),
}


def josa(word: str, kind: str) -> str:
    j = _jong(word[-1])
    if kind == "으로":
        return "로" if j in (0, 8) else "으로"  # 8 = ㄹ
    with_b, without_b = _JOSA[kind]
    return with_b if j > 0 else without_b


_SLOT = re.compile(r"\{s\}(?:\{(을를|은는|이가|과와|으로|이에요)\})?")


def fill_ko(template: str, s: str) -> str:
    return _SLOT.sub(lambda m: s + (josa(s, m.group(1)) if m.group(1) else ""), template)


def fill_en(template: str, s: str) -> str:
    return template.replace("{S}", s[0].upper() + s[1:]).replace("{s}", s)


def words(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------------------
# Korean domains: subjects (optionally with subject-specific tips), prompt
# templates, generic polite tips, domain closers; then the answer pieces.
# ---------------------------------------------------------------------------

KO_DOMAINS = load_words("ko_domains")
_KO = load_words("ko_answers")
KO_OPENERS = _KO["openers"]
# openers that do not themselves announce a list (used when an intro sentence follows)
KO_SHORT_OPENERS = _KO["short_openers"]
# (intro sentence, connector before tip 1/2/3)
KO_STRUCTURES = [(x["intro"], x["connectors"]) for x in _KO["structures"]]
KO_CLOSERS = _KO["closers"]
KO_RUDE = _KO["rude"]
KO_NEUTRAL = _KO["neutral"]
KO_PREFIXES = _KO["prefixes"]


def _subject(entry):
    """A subject is a bare string or {"subject", "tips"} with tips that fit only that subject."""
    return (entry, []) if isinstance(entry, str) else (entry["subject"], entry["tips"])


def ko_pool():
    """All (domain, subject, template) combinations as base prompts."""
    pool = []
    for dom, d in KO_DOMAINS.items():
        for entry in d["subjects"]:
            s, _ = _subject(entry)
            for t in d["prompts"]:
                pool.append((dom, entry, t))
    return pool


def ko_good(rng, dom, entry):
    d = KO_DOMAINS[dom]
    s, specific = _subject(entry)
    for _ in range(50):
        n = rng.choice([2, 2, 3])
        tips = []
        if specific:
            tips.append(rng.choice(specific))
        tips += rng.sample([t for t in d["tips"] if t not in tips], n - len(tips))
        if not specific:
            rng.shuffle(tips)
        intro, conns = rng.choice(KO_STRUCTURES)
        opener = fill_ko(rng.choice(KO_SHORT_OPENERS if intro else KO_OPENERS), s)
        r = rng.random()
        closer = rng.choice(d["closers"]) if r < 0.45 else (rng.choice(KO_CLOSERS) if r < 0.85 else "")
        body = [conns[i] + t for i, t in enumerate(tips)]
        text = " ".join(x for x in [opener, intro, *body, closer] if x)
        if 8 <= words(text) <= 40:
            return text
    raise RuntimeError("could not build answer")


def ko_rude(rng, s):
    n = rng.choice([1, 2, 2])
    parts = rng.sample(KO_RUDE, n)
    return " ".join(fill_ko(p, s) for p in parts)


def ko_neutral(rng, s):
    return fill_ko(rng.choice(KO_NEUTRAL), s)


def ko_prompt(rng, entry, template):
    s, _ = _subject(entry)
    p = fill_ko(template, s)
    if words(p) < 5 or rng.random() < 0.2:
        p = rng.choice(KO_PREFIXES) + " " + p
    assert 5 <= words(p) <= 25, p
    return p


# ---------------------------------------------------------------------------
# English domains
# ---------------------------------------------------------------------------

EN_DOMAINS = load_words("en_domains")
_EN = load_words("en_answers")
EN_OPENERS = _EN["openers"]
EN_SHORT_OPENERS = _EN["short_openers"]
# (intro, connectors, lowercase tip after connector)
EN_STRUCTURES = [(x["intro"], x["connectors"], x["lowercase"]) for x in _EN["structures"]]
EN_CLOSERS = _EN["closers"]
EN_RUDE = _EN["rude"]
EN_PROPER_STARTS = set(_EN["proper_starts"])


def _you(s: str) -> str:
    """The user's "my first salary" becomes "your first salary" in a reply."""
    return re.sub(r"\bmy\b", "your", s)


def _lc(t: str) -> str:
    return t[0].lower() + t[1:]


def en_pool():
    pool = []
    for dom, d in EN_DOMAINS.items():
        for entry in d["subjects"]:
            for t in d["prompts"]:
                pool.append((dom, entry, t))
    return pool


def en_good(rng, dom, entry):
    d = EN_DOMAINS[dom]
    s, specific = _subject(entry)
    for _ in range(50):
        n = rng.choice([2, 2, 3])
        tips = []
        if specific:
            tips.append(rng.choice(specific))
        tips += rng.sample([t for t in d["tips"] if t not in tips], n - len(tips))
        if not specific:
            rng.shuffle(tips)
        intro, conns, lower = rng.choice(EN_STRUCTURES)
        opener = fill_en(rng.choice(EN_SHORT_OPENERS if intro else EN_OPENERS), _you(s))
        r = rng.random()
        closer = rng.choice(d["closers"]) if r < 0.45 else (rng.choice(EN_CLOSERS) if r < 0.85 else "")
        body = []
        for i, t in enumerate(tips):
            c = conns[i]
            # keep proper nouns (some culture tips start with a name) capitalised
            proper = t.split()[0] in EN_PROPER_STARTS
            body.append(c + (_lc(t) if (lower and c and not proper) else t))
        text = " ".join(x for x in [opener, intro, *body, closer] if x)
        if 8 <= words(text) <= 40:
            return text
    raise RuntimeError("could not build answer")


def en_rude(rng, s):
    n = rng.choice([1, 2, 2])
    return " ".join(fill_en(p, _you(s)) for p in rng.sample(EN_RUDE, n))


def en_prompt(entry, template):
    s, _ = _subject(entry)
    p = fill_en(template, s)
    assert 5 <= words(p) <= 25, p
    return p


# ---------------------------------------------------------------------------
# English tasks with an `input` field (Alpaca style)
# ---------------------------------------------------------------------------

_TASKS = load_words("en_tasks")
OPPOSITES = _TASKS["opposites"]
SYNONYMS = _TASKS["synonyms"]
FOODS = _TASKS["foods"]  # (English, Korean)
PLACES = _TASKS["places"]  # (English, Korean)
WEATHER_ADJ = _TASKS["weather"]  # (English adjective, Korean predicate)
SUMMARY_REASONS = _TASKS["summary_reasons"]
SUMMARY_WHO = _TASKS["summary_who"]
SUMMARY_DID = _TASKS["summary_did"]
SUMMARY_PLAN = _TASKS["summary_plan"]
GRAMMAR_SUBJ = _TASKS["grammar_subjects"]
GRAMMAR_VERB = _TASKS["grammar_verbs"]  # (base form, third person singular)
GRAMMAR_PLACE = _TASKS["grammar_places"]
GRAMMAR_TIME = _TASKS["grammar_times"]
SENTI = _TASKS["sentiment"]  # (thing reviewed, part of it)
POLITE = _TASKS["polite"]  # (curt request, polite rewrite)
COUNT_SENTS = _TASKS["count_sentences"]
EN_TASK_RUDE = _TASKS["rude"]


def translation_pair(rng):
    k = rng.randrange(5)
    if k == 0:
        en, ko = rng.choice(FOODS)
        return f"I like {en}.", f"저는 {ko}{josa(ko, '을를')} 좋아해요."
    if k == 1:
        en, ko = rng.choice(PLACES)
        return f"Where is the {en}?", f"{ko}{josa(ko, '이가')} 어디에 있어요?"
    if k == 2:
        en, ko = rng.choice(WEATHER_ADJ)
        return f"The weather is {en} today.", f"오늘은 날씨가 {ko}."
    if k == 3:
        en, ko = rng.choice(PLACES)
        return f"I am going to the {en} tomorrow.", f"저는 내일 {ko}에 가요."
    en, ko = rng.choice(FOODS)
    return f"Do you want some {en}?", f"{ko} 좀 드실래요?"


def input_task(rng):
    """Return (instruction, input, good_output)."""
    k = rng.randrange(10)
    if k == 0:
        a, b = rng.choice(OPPOSITES)
        ins = rng.choice(
            [
                "Give the opposite of this word.",
                "What is the antonym of the word below?",
                "Write the opposite of this word.",
            ]
        )
        out = rng.choice(
            [
                f'Sure! The opposite of "{a}" is "{b}".',
                f'The opposite of "{a}" is "{b}". I hope this helps!',
                f'Good question. The antonym of "{a}" is "{b}".',
            ]
        )
        return ins, a, out
    if k == 1:
        a, b = rng.choice(SYNONYMS)
        ins = rng.choice(["Give a synonym for this word.", "Suggest a word with the same meaning."])
        out = rng.choice(
            [
                f'Sure! A good synonym for "{a}" is "{b}".',
                f'You can use "{b}" instead of "{a}". They mean almost the same thing.',
            ]
        )
        return ins, a, out
    if k == 2:
        en, ko = translation_pair(rng)
        ins = rng.choice(["Please translate this into Korean.", "Translate this sentence into Korean."])
        out = rng.choice(
            [
                f'Sure! In Korean, you can say: "{ko}"',
                f'Here is the Korean translation: "{ko}"',
                f'Of course. "{en}" is "{ko}" in Korean.',
            ]
        )
        return ins, en, out
    if k == 3:
        en, ko = translation_pair(rng)
        ins = rng.choice(
            ["Translate this Korean sentence into English.", "Please translate this into English."]
        )
        out = rng.choice([f'Sure! In English, it means: "{en}"', f'Here is the English translation: "{en}"'])
        return ins, ko, out
    if k == 4:
        reason, who, did, plan = (
            rng.choice(SUMMARY_REASONS),
            rng.choice(SUMMARY_WHO),
            rng.choice(SUMMARY_DID),
            rng.choice(SUMMARY_PLAN),
        )
        inp = (
            f"Because {reason}, {who} decided not to go ahead with {plan}, so they {did} "
            f"and said later that it was a surprisingly fun day."
        )
        summ = f"{who[0].upper() + who[1:]} {did} instead of {plan} because {reason}."
        ins = rng.choice(
            ["Summarise this sentence in one line.", "Write a short summary of the sentence below."]
        )
        out = rng.choice([f"Here is a short summary: {summ}", f"Sure! {summ}"])
        return ins, inp, out
    if k == 5:
        subj, (v, vs), place, time = (
            rng.choice(GRAMMAR_SUBJ),
            rng.choice(GRAMMAR_VERB),
            rng.choice(GRAMMAR_PLACE),
            rng.choice(GRAMMAR_TIME),
        )
        inp = f"{subj} {v} to the {place} every {time}."
        fixed = f"{subj} {vs} to the {place} every {time}."
        ins = rng.choice(["Correct the grammar in this sentence.", "Fix the mistake in the sentence."])
        out = f'Here is the corrected sentence: "{fixed}" The verb needs to agree with the singular subject.'
        return ins, inp, out
    if k == 6:
        thing, part = rng.choice(SENTI)
        ins = rng.choice(["Classify the sentiment of this review.", "Is this review positive or negative?"])
        if rng.random() < 0.5:
            inp = f"I loved the {thing}, and the {part} was wonderful."
            out = f"The sentiment is positive. The writer enjoyed the {thing} and praised the {part}."
        else:
            inp = f"I was disappointed by the {thing}, and the {part} was terrible."
            out = (
                f"The sentiment is negative. The writer was unhappy with the {thing} and complained "
                f"about the {part}."
            )
        return ins, inp, out
    if k == 7:
        nums = rng.sample(range(1, 60), rng.randint(4, 6))
        ins = rng.choice(
            ["Sort these numbers from smallest to largest.", "Put these numbers in ascending order."]
        )
        out = "Sure! Sorted from smallest to largest: " + ", ".join(map(str, sorted(nums))) + "."
        return ins, ", ".join(map(str, nums)), out
    if k == 8:
        rude, polite = rng.choice(POLITE)
        ins = rng.choice(["Rewrite this request in a polite tone.", "Make this sentence more polite."])
        out = rng.choice([f'Here is a more polite version: "{polite}"', f'Sure! You could say: "{polite}"'])
        return ins, rude, out
    sent = rng.choice(COUNT_SENTS)
    ins = rng.choice(["Count the words in this sentence.", "How many words are in the sentence below?"])
    out = f"There are {len(sent.split())} words in this sentence. I hope this helps!"
    return ins, sent, out


# ---------------------------------------------------------------------------
# Tokenizer corpus: templates from coati, prose from the word lists
# ---------------------------------------------------------------------------


def template_words(language: str) -> str:
    """Every word of a language's template on one line, its whitespace collapsed."""
    t = TEMPLATES[language]
    return " ".join(" ".join([t["header"], t["instruction"], t["input"], t["response"]]).split())


_KP = load_words("ko_prose")
KO_PEOPLE = _KP["people"]
KO_PLACES = _KP["places"]
KO_TIMES = _KP["times"]
KO_ACTIONS = _KP["actions"]
KO_FOODS = _KP["foods"]
KO_FEEL = _KP["feelings"]
KO_ADJ = _KP["adjectives"]
KO_THINGS = _KP["things"]
KO_ANIMALS = _KP["animals"]
KO_ANIMAL_ACT = _KP["animal_actions"]
KO_NATURE = _KP["nature"]  # (thing in nature, what it does in that season)
KO_SEASONS = _KP["seasons"]
KO_JOBS = _KP["jobs"]
KO_SKILLS = _KP["skills"]
KO_EXTRA = _KP["sentences_rare_syllables"]  # Hangul syllables the other lists rarely reach
KO_EXTRA2 = _KP["sentences_everyday"]
_EP = load_words("en_prose")
EN_NAMES = _EP["names"]
EN_PLACES = _EP["places"]
EN_ACTIONS = _EP["actions"]
EN_TIMES = _EP["times"]
EN_FEEL = _EP["feelings"]
EN_ADJ = _EP["adjectives"]
EN_THINGS = _EP["things"]
EN_ANIMALS = _EP["animals"]
EN_JOBS = _EP["jobs"]
EN_EXTRA = _EP["sentences"]


def ko_prose(rng):
    k = rng.randrange(14)
    p, pl = rng.choice(KO_PEOPLE), rng.choice(KO_PLACES)
    if k == 0:
        return f"{rng.choice(KO_TIMES)} {p}{josa(p, '이가')} {pl}에서 {rng.choice(KO_ACTIONS)}."
    if k == 1:
        f = rng.choice(KO_FOODS)
        return f"{p}{josa(p, '이가')} {f}{josa(f, '을를')} 먹으면서 {rng.choice(KO_FEEL)}고 말했어요."
    if k == 2:
        t = rng.choice(KO_THINGS)
        return f"{pl}에 {rng.choice(KO_ADJ)} {t}{josa(t, '이가')} 하나 놓여 있었어요."
    if k == 3:
        n = rng.randint(2, 12)
        f = rng.choice(KO_FOODS)
        price = rng.randint(2, 40) * 500
        return f"{f} {n}인분에 {price:,}원이라서 {p}{josa(p, '과와')} 나눠서 냈어요."
    if k == 4:
        m, d, h, mi = (
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(1, 12),
            rng.choice([0, 10, 15, 20, 30, 45]),
        )
        return f"{m}월 {d}일 {rng.choice(['오전', '오후'])} {h}시 {mi}분에 {pl} 앞에서 {p}{josa(p, '을를')} 만나기로 했어요."
    if k == 5:
        t = rng.choice(KO_THINGS)
        return f"{p}{josa(p, '은는')} 잃어버린 {t}{josa(t, '을를')} 찾으려고 {pl}까지 다시 갔지만, 결국 못 찾았대요."
    if k == 6:
        return f"“{rng.choice(KO_FEEL)}!” {p}{josa(p, '이가')} {rng.choice(KO_TIMES)} {pl}에서 외쳤어요."
    if k == 7:
        a = rng.choice(KO_ANIMALS)
        return f"{pl} 근처에서 {a} 한 마리가 {rng.choice(KO_ANIMAL_ACT)}."
    if k == 8:
        se, (nat, pred) = rng.choice(KO_SEASONS), rng.choice(KO_NATURE)
        return f"{se}{josa(se, '이가')} 되면 {nat}{josa(nat, '이가')} {pred}."
    if k == 9:
        j, sk = rng.choice(KO_JOBS), rng.choice(KO_SKILLS)
        return f"{p}{josa(p, '은는')} {j}{josa(j, '이가')} 되고 싶어서 요즘 {sk}{josa(sk, '을를')} 열심히 배우고 있어요."
    if k == 10:
        t = rng.choice(KO_THINGS)
        return f"“이 {t}{josa(t, '은는')} 얼마예요?” “{rng.randint(1, 99) * 1000:,}원입니다. 오늘만 {rng.choice([10, 20, 30, 50])}% 할인해 드려요.”"
    if k == 11:
        return f"{pl}에 가려면 어느 쪽으로 가야 하나요? {rng.randint(1, 9)}번 출구로 나가서 {rng.randint(2, 9)}백 미터쯤 걸으시면 돼요."
    if k == 12:
        return rng.choice(KO_EXTRA2)
    return rng.choice(KO_EXTRA)


def en_prose(rng):
    k = rng.randrange(10)
    n, pl = rng.choice(EN_NAMES), rng.choice(EN_PLACES)
    if k == 0:
        return f"{rng.choice(EN_TIMES)}, {n} went to {pl} and {rng.choice(EN_ACTIONS)}."
    if k == 1:
        return f"The {rng.choice(EN_ADJ)} {rng.choice(EN_THINGS)} near {pl} belongs to {n}; nobody knows why."
    if k == 2:
        return f"{n} {rng.choice(EN_FEEL)} after a {rng.choice(EN_ADJ)} day at {pl}... well, almost."
    if k == 3:
        h, m = rng.randint(1, 12), rng.choice(["00", "15", "30", "45"])
        price = rng.randint(100, 9999) / 100
        return f"The train leaves at {h}:{m} {rng.choice(['a.m.', 'p.m.'])} and a ticket costs ${price:.2f} (tax included)."
    if k == 4:
        pct = rng.randint(1, 99)
        return f"About {pct}% of the people at {pl} said the weather was {rng.choice(['sunny', 'chilly', 'mild', 'humid', 'perfect', 'gloomy', 'breezy'])} today."
    if k == 5:
        a, b = rng.sample(EN_NAMES, 2)
        return f'"Are you coming to {pl}?" asked {a}. "Yes, in {rng.randint(2, 40)} minutes!" said {b}.'
    if k == 6:
        return (
            f"{n} wrote: {rng.randint(2, 9)} cups of flour, {rng.randint(2, 5)} eggs, "
            f"{rng.randint(50, 500)} ml of milk - then mix well!"
        )
    if k == 7:
        return (
            f"A {rng.choice(EN_ADJ)} {rng.choice(EN_ANIMALS)} was sitting quietly near {pl} when {n} arrived."
        )
    if k == 8:
        j = rng.choice(EN_JOBS)
        art = "an" if j[0] in "aeiou" else "a"
        return f"{n} wants to become {art} {j}, so {n} practices a little every day."
    return rng.choice(EN_EXTRA)


# ---------------------------------------------------------------------------
# Build everything
# ---------------------------------------------------------------------------


def dump_array(path: Path, rows):
    with path.open("w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    rng = random.Random(SEED)

    # ---- Korean: disjoint prompt splits -------------------------------------------------
    pool = ko_pool()
    rng.shuffle(pool)
    assert len(pool) >= 700, len(pool)
    sft_base, rm_base, ppo_base = pool[:300], pool[300:550], pool[550:700]

    sft = []
    for i, (dom, entry, t) in enumerate(sft_base):
        s, _ = _subject(entry)
        prompt = ko_prompt(rng, entry, t)
        comp = ko_rude(rng, s) if i % 10 in (2, 5, 8) else ko_good(rng, dom, entry)  # 30% curt
        sft.append({"prompt": prompt, "completion": comp, "tokens": words(comp)})

    rm = []
    for dom, entry, t in rm_base:
        s, _ = _subject(entry)
        prompt = ko_prompt(rng, entry, t)
        best, mid, worst = ko_good(rng, dom, entry), ko_neutral(rng, s), ko_rude(rng, s)
        order = [0, 1, 2]  # quality rank: 0 best, 1 middle, 2 worst
        rng.shuffle(order)
        texts = {0: best, 1: mid, 2: worst}
        row = {"prompt": prompt}
        for slot, rank in enumerate(order):
            row[f"completion_{slot}"] = texts[rank]
        # KoChatGPT's meaning (--ranking_order slots): ranking[k] is the slot holding the k-th best completion
        row["ranking"] = [order.index(rank) for rank in range(3)]
        rm.append(row)

    ppo = [{"prompt": ko_prompt(rng, entry, t)} for _, entry, t in ppo_base]

    # ---- English ------------------------------------------------------------------------
    epool = en_pool()
    rng.shuffle(epool)
    assert len(epool) >= 420, len(epool)
    alp_base, pair_base, pr_base = epool[:120], epool[120:320], epool[320:420]

    alpaca = []
    for i, (dom, entry, t) in enumerate(alp_base):
        s, _ = _subject(entry)
        out = en_rude(rng, s) if i % 10 in (1, 4, 7) else en_good(rng, dom, entry)
        alpaca.append({"instruction": en_prompt(entry, t), "input": "", "output": out})
    seen = set()
    with_input = []
    while len(with_input) < 80:
        ins, inp, out = input_task(rng)
        if (ins, inp) in seen:
            continue
        seen.add((ins, inp))
        if len(with_input) % 10 in (3, 6, 9):
            out = rng.choice(EN_TASK_RUDE)
        with_input.append({"instruction": ins, "input": inp, "output": out})
    alpaca += with_input
    rng.shuffle(alpaca)

    pairs = []
    for dom, entry, t in pair_base:
        s, _ = _subject(entry)
        pairs.append(
            {"prompt": en_prompt(entry, t), "chosen": en_good(rng, dom, entry), "rejected": en_rude(rng, s)}
        )

    prompts_en = [{"instruction": en_prompt(entry, t)} for _, entry, t in pr_base]

    # ---- write data files ---------------------------------------------------------------
    dump_array(OUT / "kochatgpt_sft_ko.jsonl", sft)
    dump_array(OUT / "kochatgpt_rm_ko.jsonl", rm)
    dump_array(OUT / "kochatgpt_ppo_ko.jsonl", ppo)
    dump_array(OUT / "alpaca_en.json", alpaca)
    with (OUT / "pairs_en.jsonl").open("w", encoding="utf-8") as f:
        for r in pairs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    dump_array(OUT / "prompts_en.json", prompts_en)
    # Held-out PPO prompts: 60 pool entries no other file uses, drawn with a generator of their own after
    # everything else, so every other file (and the tokenizer corpus) stays as it was.
    held_rng = random.Random(SEED + 1)
    taken = {r["prompt"] for r in ppo}
    ppo_eval = []
    for _, entry, t in pool[700:]:
        prompt = ko_prompt(held_rng, entry, t)
        if prompt not in taken and len(ppo_eval) < 60:
            taken.add(prompt)
            ppo_eval.append({"prompt": prompt})
    dump_array(OUT / "kochatgpt_ppo_eval_ko.jsonl", ppo_eval)

    # ---- tokenizer corpus ---------------------------------------------------------------
    lines = []
    # template words, bare and filled in exactly as training builds them (prompt, then response)
    lines.append(template_words("ko"))
    lines.append(template_words("en"))
    for r in sft[:12]:
        lines.append(build_prompt(r["prompt"], "", "ko") + r["completion"])
    ko_input_examples = [
        ("다음 문장을 영어로 번역하세요.", "저는 사과를 좋아해요.", "I like apples."),
        (
            "다음 문장을 한 문장으로 요약하세요.",
            "비가 와서 소풍을 미루고 집에서 다 함께 영화를 봤어요.",
            "비 때문에 소풍 대신 집에서 영화를 봤습니다.",
        ),
        ("다음 단어의 반대말을 알려 주세요.", "뜨겁다", "‘뜨겁다’의 반대말은 ‘차갑다’입니다."),
        ("다음 문장을 더 공손하게 바꿔 주세요.", "창문 닫아.", "창문 좀 닫아 주시겠어요?"),
        ("다음 숫자를 작은 것부터 정렬하세요.", "7, 3, 12, 5", "정렬하면 3, 5, 7, 12입니다."),
        (
            "다음 문장의 맞춤법을 고쳐 주세요.",
            "오늘 날씨가 참 조와요.",
            "고친 문장은 ‘오늘 날씨가 참 좋아요.’입니다.",
        ),
    ]
    for ins, inp, resp in ko_input_examples:
        lines.append(build_prompt(ins, inp, "ko") + resp)
    for r in alpaca[:14]:
        lines.append(build_prompt(r["instruction"], r["input"], "en") + r["output"])
    # every distinct sentence / prompt used in the data sets
    texts = []
    for r in sft:
        texts += [r["prompt"], r["completion"]]
    for r in rm:
        texts += [r["prompt"], r["completion_0"], r["completion_1"], r["completion_2"]]
    texts += [r["prompt"] for r in ppo]
    for r in alpaca:
        texts += [r["instruction"], r["input"], r["output"]]
    for r in pairs:
        texts += [r["prompt"], r["chosen"], r["rejected"]]
    texts += [r["instruction"] for r in prompts_en]
    seen_s = {}
    for t in texts:
        for sent in re.split(r"(?<=[.!?])\s+", t):
            if sent:
                seen_s.setdefault(sent, None)
    pieces = list(seen_s)
    rng.shuffle(pieces)
    budget = 90_000  # bytes of data-set sentences; the rest is free prose
    for i in range(0, len(pieces), 6):
        line = " ".join(pieces[i : i + 6])
        budget -= len(line.encode("utf-8")) + 1
        if budget < 0:
            break
        lines.append(line)
    # word lists as prose, then generated prose until ~200 KB
    lines.append("오늘 장 볼 것: " + ", ".join(KO_FOODS) + ".")
    lines.append("방에 있는 물건: " + ", ".join(KO_THINGS) + ".")
    lines.append("Things in the room: " + ", ".join(EN_THINGS) + ".")
    lines.extend(KO_EXTRA)
    lines.extend(KO_EXTRA2)
    lines.extend(EN_EXTRA)
    target = 200_000
    size = sum(len(x.encode("utf-8")) + 1 for x in lines)
    n = 0
    while size < target:
        para = (
            " ".join(ko_prose(rng) for _ in range(rng.randint(3, 6)))
            if n % 5 < 3
            else " ".join(en_prose(rng) for _ in range(rng.randint(3, 6)))
        )
        if n % 40 == 0:
            para = (
                build_prompt(prompts_en[n // 40 % len(prompts_en)]["instruction"], "", "en")
                if n % 80 == 0
                else build_prompt(ppo[n // 40 % len(ppo)]["prompt"], "", "ko")
            )
        lines.append(para)
        size += len(para.encode("utf-8")) + 1
        n += 1
    (OUT / "tokenizer_corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
