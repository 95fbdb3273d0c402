#!/usr/bin/env python3
"""Generate the small Korean conversation files shipped in ``data/``.

Every sentence here was written for this project. The script is deterministic (fixed seed, standard library
only): ``python data/make_conversations.py`` rewrites the three files byte for byte.

  conversations_ko.jsonl             multi-turn conversations, {"messages": [{"role", "content"}, ...]}
  conversations_sharegpt_ko.jsonl    the same kind in ShareGPT spelling, {"conversations": [{"from", "value"}]}
  preference_conversations_ko.jsonl  {"chosen": [...], "rejected": [...]} message lists that share every turn
                                     but the last assistant answer: chosen is relevant, polite and complete,
                                     rejected curt, rude or off the topic
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240611
OUT = Path(__file__).resolve().parent
N_CONVERSATIONS, N_SHAREGPT, N_PREFERENCE = 60, 10, 60


def _final_consonant(word: str) -> int:
    """0 when the last Hangul syllable has no final consonant, 8 for ㄹ, another positive index otherwise."""
    ch = word[-1]
    return (ord(ch) - 0xAC00) % 28 if "가" <= ch <= "힣" else 0


def particle(word: str, pair: str) -> str:
    """The particle that fits `word`: pair is 을를, 은는, 이가, 과와 or 으로."""
    final = _final_consonant(word)
    if pair == "으로":
        return "로" if final in (0, 8) else "으로"
    return pair[0] if final else pair[1]


def fill(template: str, subject: str) -> str:
    for pair in ("을를", "은는", "이가", "과와", "으로"):
        template = template.replace("{s}{" + pair + "}", subject + particle(subject, pair))
    return template.replace("{s}", subject)


DOMAINS = {
    "요리": {
        "subjects": ["김치찌개", "된장찌개", "계란말이", "잡채", "떡볶이", "미역국"],
        "openers": ["{s}{을를} 집에서 맛있게 만들려면 어떻게 해야 하나요?",
                    "{s}{을를} 처음 만들어 보는데 요령이 있을까요?",
                    "자취생인데 {s}{을를} 간단하게 만들고 싶어요. 방법을 알려 주세요."],
        "tips": ["재료는 미리 손질해 두면 조리가 한결 편해요.", "간은 마지막에 조금씩 맞추는 것이 좋습니다.",
                 "중간 불에서 천천히 익히면 맛이 깊어져요.", "양념은 미리 섞어 두면 실수가 줄어듭니다.",
                 "처음에는 레시피 분량을 그대로 따라 해 보세요."],
        "follow_ups": [
            ("재료는 어디서 사는 게 좋을까요?",
             "동네 시장이나 마트의 제철 코너를 추천해요. 필요한 만큼만 사면 남는 재료가 줄어듭니다."),
            ("남으면 어떻게 보관하나요?",
             "한 김 식힌 뒤 밀폐 용기에 담아 냉장 보관하세요. 이삼일 안에 드시는 것이 좋습니다."),
            ("조금 더 건강하게 만들 수도 있나요?",
             "소금과 설탕을 조금 줄이고 채소를 넉넉히 넣어 보세요. 맛은 살리면서 훨씬 가벼워져요."),
            ("{s}에 어울리는 반찬도 추천해 주세요.",
             "김치나 나물 무침처럼 간단한 반찬이 잘 어울려요. 계란찜을 곁들여도 좋습니다."),
        ],
        "closers": ["맛있게 드세요!", "즐거운 요리 시간 되세요."],
    },
    "여행": {
        "subjects": ["제주도", "부산", "경주", "강릉", "전주", "여수"],
        "openers": ["{s} 여행을 처음 가는데 어떻게 계획하면 좋을까요?",
                    "주말에 {s}에 다녀오려고 해요. 조언 좀 해 주세요.",
                    "부모님을 모시고 {s}에 가려는데 무엇을 준비하면 좋을까요?"],
        "tips": ["숙소는 교통이 편한 곳으로 미리 예약해 두세요.",
                 "하루에 너무 많은 곳을 넣지 말고 여유 있게 일정을 짜세요.",
                 "현지 시장에 들러 그 지역 음식을 꼭 맛보세요.", "날씨를 확인하고 편한 신발을 챙기세요.",
                 "평일에 떠나면 사람이 적고 비용도 아낄 수 있어요."],
        "follow_ups": [
            ("차를 빌려야 할까요?",
             "가고 싶은 곳이 흩어져 있다면 렌터카가 편해요. 시내 위주라면 대중교통과 택시로도 충분합니다."),
            ("비가 오면 어디를 가면 좋을까요?",
             "박물관이나 전통 시장처럼 실내에서 즐길 곳을 미리 골라 두세요. 분위기 좋은 카페 거리도 괜찮아요."),
            ("경비는 얼마나 잡으면 될까요?",
             "숙소와 교통비를 먼저 정하고 식비와 입장료는 하루 단위로 잡아 보세요. 예비비를 조금 두면 마음이 편합니다."),
            ("{s}에서 꼭 먹어 볼 음식이 있나요?",
             "시장 골목의 향토 음식을 추천해요. 현지 분들이 줄 서는 가게를 찾아가면 실패가 적습니다."),
        ],
        "closers": ["즐거운 여행 되세요!", "좋은 추억 많이 만드세요."],
    },
    "운동": {
        "subjects": ["달리기", "걷기", "요가", "자전거", "등산", "줄넘기"],
        "openers": ["{s}{을를} 새로 시작하려는데 어떻게 하면 좋을까요?",
                    "{s}{을를} 꾸준히 하는 요령이 있을까요?",
                    "운동 초보인데 {s}{으로} 체력을 기를 수 있을까요?"],
        "tips": ["처음에는 짧게, 일주일에 두세 번부터 시작하세요.", "운동 전후로 충분히 스트레칭을 해 주세요.",
                 "무리하지 말고 몸 상태에 맞춰 강도를 조금씩 올리세요.",
                 "물을 자주 마시고 잠을 충분히 자는 것도 중요해요.",
                 "기록을 남기면 변화가 보여서 동기 부여가 됩니다."],
        "follow_ups": [
            ("아침과 저녁 중 언제 하는 게 좋을까요?",
             "꾸준히 할 수 있는 시간이 가장 좋아요. 아침이 바쁘시다면 저녁에 가볍게 하셔도 충분합니다."),
            ("무릎이 조금 아픈데 계속해도 될까요?",
             "통증이 있으면 하루 이틀 쉬면서 상태를 지켜보세요. 계속 아프다면 병원에서 진료를 받아 보시는 게 안전합니다."),
            ("장비는 무엇을 사야 하나요?",
             "처음에는 편한 옷과 기본 장비만 있으면 충분해요. 익숙해진 뒤에 필요한 것을 하나씩 늘려 가세요."),
            ("혼자 하니까 자꾸 미루게 돼요.",
             "친구와 함께 하거나 동호회에 들어가 보세요. 달력에 운동한 날을 표시하는 것도 도움이 됩니다."),
        ],
        "closers": ["건강하게 즐기세요!", "응원할게요."],
    },
    "공부": {
        "subjects": ["영어", "한국사", "수학", "일본어", "코딩", "글쓰기"],
        "openers": ["{s} 공부를 어떻게 시작하면 좋을까요?", "{s} 실력을 늘리고 싶은데 방법이 있을까요?",
                    "직장인인데 {s}{을를} 꾸준히 공부하는 요령이 궁금해요."],
        "tips": ["하루 삼십 분이라도 매일 같은 시간에 공부해 보세요.",
                 "목표를 작게 나누면 성취감이 생겨 오래 갑니다.",
                 "배운 내용을 다른 사람에게 설명하듯 정리해 보세요.",
                 "틀린 부분은 따로 모아 두고 주말에 다시 보세요.",
                 "쉬운 교재 한 권을 끝까지 보는 것부터 시작하세요."],
        "follow_ups": [
            ("집중이 잘 안 될 때는 어떻게 하나요?",
             "휴대폰을 다른 방에 두고 이십오 분 공부, 오 분 휴식을 반복해 보세요. 짧게 끊어 가면 집중이 훨씬 쉬워요."),
            ("학원에 다니는 게 나을까요?",
             "혼자 계획을 지키기 어렵다면 학원이나 스터디가 도움이 돼요. 한 달 정도 혼자 해 보고 정하셔도 늦지 않습니다."),
            ("얼마나 지나야 실력이 늘까요?",
             "사람마다 다르지만 석 달쯤 꾸준히 하면 변화를 느끼는 분이 많아요. 조급해하지 말고 기록을 남겨 보세요."),
            ("{s} 공부에 좋은 앱도 있나요?",
             "문제 풀이나 암기 앱을 하루 십 분씩 활용해 보세요. 다만 앱은 보조로 쓰고 중심은 교재에 두시는 게 좋아요."),
        ],
        "closers": ["꾸준히 하시면 분명 늘어요.", "공부 응원합니다!"],
    },
    "반려동물": {
        "subjects": ["강아지", "고양이", "토끼"],
        "openers": ["{s}{을를} 처음 키우게 됐는데 무엇부터 준비해야 하나요?",
                    "{s}{을를} 입양하려고 하는데 미리 알아 둘 점이 있을까요?",
                    "새로 온 {s}{과와} 잘 지내는 방법이 궁금해요."],
        "tips": ["집에 오면 며칠은 조용한 공간에서 적응할 시간을 주세요.",
                 "사료와 물그릇, 잠자리를 미리 마련해 두세요.",
                 "가까운 동물병원을 알아 두고 건강 검진을 받아 보세요.",
                 "매일 같은 시간에 밥을 주면 생활 리듬이 잡혀요.",
                 "처음부터 너무 많이 만지기보다 천천히 다가가세요."],
        "follow_ups": [
            ("간식은 얼마나 줘도 되나요?",
             "간식은 하루에 먹는 양의 일 할 정도가 적당해요. 사람 음식은 탈이 날 수 있으니 주지 마세요."),
            ("혼자 있는 시간이 길면 괜찮을까요?",
             "외출 전에 충분히 놀아 주고 장난감을 두고 나가 보세요. 오래 비우는 날이 잦다면 돌봄 서비스도 알아보세요."),
            ("목욕은 얼마나 자주 시켜야 하나요?",
             "너무 자주 씻기면 피부가 상할 수 있어요. 동물병원에서 아이에게 맞는 주기를 물어보시는 게 가장 정확합니다."),
            ("예방 접종은 언제 해야 하나요?",
             "나이와 건강 상태에 따라 시기가 달라요. 첫 검진 때 수의사와 접종 일정을 함께 짜 두세요."),
        ],
        "closers": ["행복한 시간 보내세요!", "좋은 가족이 되실 거예요."],
    },
    "집안일": {
        "subjects": ["욕실 청소", "빨래", "냉장고 정리", "옷장 정리", "설거지"],
        "openers": ["{s}{을를} 빠르게 끝내는 요령이 있을까요?",
                    "{s}{이가} 너무 귀찮은데 쉽게 하는 방법이 있나요?",
                    "자취를 시작했는데 {s}{은는} 얼마나 자주 해야 하나요?"],
        "tips": ["한 번에 몰아서 하기보다 매일 십 분씩 나눠 해 보세요.",
                 "자주 쓰는 물건부터 자리를 정해 두면 정리가 쉬워요.",
                 "음악을 틀어 놓고 시간을 정해 두면 덜 지루합니다.",
                 "필요 없는 물건은 그때그때 비우는 습관이 도움이 돼요.",
                 "도구를 손 닿는 곳에 두면 미루지 않게 됩니다."],
        "follow_ups": [
            ("세제는 어떤 걸 쓰면 좋을까요?",
             "용도에 맞는 중성 세제 하나면 대부분 충분해요. 여러 세제를 섞어 쓰는 건 위험하니 꼭 피하세요."),
            ("가족과 나눠서 하고 싶은데 어떻게 정하면 좋을까요?",
             "할 일을 목록으로 적고 요일별로 나눠 맡아 보세요. 한 달에 한 번 역할을 바꾸면 불만이 줄어듭니다."),
            ("시간이 없을 때는 어떻게 하나요?",
             "가장 눈에 띄는 곳 한 군데만 정리해도 집이 달라 보여요. 나머지는 주말에 하셔도 괜찮습니다."),
        ],
        "closers": ["깔끔한 집에서 편히 쉬세요.", "도움이 되었으면 좋겠어요."],
    },
}

SYSTEMS = ["당신은 친절한 생활 도우미입니다. 존댓말로 정확하게 답하세요.",
           "사용자의 질문에 공손하고 구체적으로 답하는 한국어 비서입니다.",
           "짧고 이해하기 쉽게, 예의 바르게 답하세요."]
ANSWER_OPENERS = ["좋은 질문이에요.", "네, 도와드릴게요.", "몇 가지 방법을 알려 드릴게요.", "처음이시라면 이렇게 해 보세요."]
FOLLOW_PREFIXES = ["", "그렇군요. ", "감사합니다. ", "아, 알겠어요. "]
LAST_PREFIXES = ["정말 고마워요. 마지막으로 하나만 더 여쭤볼게요. ", "덕분에 이해가 됐어요. 그런데 ", "좋네요! "]
REPLY_PREFIXES = ["", "네, "]
REPLY_CLOSERS = ["", " 더 궁금한 점이 있으면 편하게 물어보세요."]
REJECTED = {
    "curt": ["몰라요.", "알아서 하세요.", "글쎄요, 별로 관심 없어요.", "그런 건 검색해 보세요."],
    "rude": ["그걸 왜 저한테 물어요? 귀찮네요.", "그 정도는 혼자 해결하세요.", "또 그 얘기예요? 지겨워요."],
    "off_topic": ["그보다 요즘 날씨가 참 좋네요. 산책이나 다녀오세요.", "저는 어제 본 영화 이야기가 하고 싶어요.",
                  "그건 모르겠고, 점심 메뉴나 추천해 드릴까요?"],
}


def first_answer(rng: random.Random, domain: dict) -> str:
    tip_a, tip_b = rng.sample(domain["tips"], 2)
    return f"{rng.choice(ANSWER_OPENERS)} {tip_a} 그리고 {tip_b} {rng.choice(domain['closers'])}"


def conversation(rng: random.Random, n_user: int, seen: set) -> list[dict]:
    """One conversation of n_user user turns, each answered; never the same opening question twice."""
    while True:
        name = rng.choice(sorted(DOMAINS))
        domain = DOMAINS[name]
        subject = rng.choice(domain["subjects"])
        opener = fill(rng.choice(domain["openers"]), subject)
        if opener not in seen:
            seen.add(opener)
            break
    messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.3 else []
    messages += [{"role": "user", "content": opener}, {"role": "assistant", "content": first_answer(rng, domain)}]
    follow_ups = rng.sample(domain["follow_ups"], n_user - 1)
    for k, (question, answer) in enumerate(follow_ups):
        prefix = rng.choice(LAST_PREFIXES) if k == n_user - 2 and n_user == 3 else rng.choice(FOLLOW_PREFIXES)
        messages.append({"role": "user", "content": prefix + fill(question, subject)})
        messages.append({"role": "assistant", "content": rng.choice(REPLY_PREFIXES) + fill(answer, subject)
                         + rng.choice(REPLY_CLOSERS)})
    return messages


def sharegpt(messages: list[dict]) -> list[dict]:
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"from": names[m["role"]], "value": m["content"]} for m in messages]


def preference(rng: random.Random, seen: set) -> dict:
    """Shared turns, then the last answer twice: the conversation's own answer and a bad one."""
    messages = conversation(rng, rng.choice([1, 2, 2, 3]), seen)
    kind = rng.choice(sorted(REJECTED))
    rejected = messages[:-1] + [{"role": "assistant", "content": rng.choice(REJECTED[kind])}]
    return {"chosen": messages, "rejected": rejected}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(out: Path = OUT) -> None:
    rng = random.Random(SEED)
    seen: set = set()  # the SFT files share no opening question; the preference file has its own set
    conversations = [{"messages": conversation(rng, rng.choice([2, 3]), seen)} for _ in range(N_CONVERSATIONS)]
    shared = [{"conversations": sharegpt(conversation(rng, rng.choice([2, 3]), seen))} for _ in range(N_SHAREGPT)]
    seen_pairs: set = set()
    pairs = [preference(rng, seen_pairs) for _ in range(N_PREFERENCE)]
    write_jsonl(out / "conversations_ko.jsonl", conversations)
    write_jsonl(out / "conversations_sharegpt_ko.jsonl", shared)
    write_jsonl(out / "preference_conversations_ko.jsonl", pairs)


if __name__ == "__main__":
    main()
