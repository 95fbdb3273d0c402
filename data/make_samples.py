#!/usr/bin/env python3
"""Generate the small demo data sets shipped in ``data/``.

Every sentence here was written for this project (hand-written word lists,
tips and templates); nothing is copied from an existing data set.  The
script is deterministic: ``python data/make_samples.py`` rewrites all files
byte-for-byte identically.

Design goal: a tiny randomly initialised model (2 layers, hidden 64) must be
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
from pathlib import Path

SEED = 20240607
OUT = Path(__file__).resolve().parent

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
# templates, generic polite tips, domain closers.
# ---------------------------------------------------------------------------

KO_DOMAINS = {
    "요리": {
        "subjects": [
            "김치찌개",
            "된장찌개",
            "계란말이",
            "불고기",
            "잡채",
            "떡볶이",
            "미역국",
            "김치볶음밥",
            "감자전",
            "비빔밥",
            "감자조림",
            "콩나물국",
            "제육볶음",
            "순두부찌개",
        ],
        "prompts": [
            "{s} 맛있게 만드는 방법을 알려 주세요.",
            "{s}{을를} 처음 만들어 보는데 어떤 점을 주의해야 하나요?",
            "집에서 {s}{을를} 쉽게 만드는 요령이 있을까요?",
            "{s}{을를} 만들면 맛이 자꾸 밍밍한데 어떻게 하면 좋을까요?",
            "혼자 먹을 {s}{을를} 간단하게 만들고 싶은데 팁이 있나요?",
            "요리 초보도 {s}{을를} 잘 만들 수 있을까요?",
            "손님 대접용으로 {s}{을를} 만들려고 하는데 조언 부탁드려요.",
        ],
        "tips": [
            "재료를 미리 손질해 두면 조리가 훨씬 수월해요.",
            "간은 처음부터 세게 하지 말고 마지막에 맞추는 것이 좋습니다.",
            "센 불보다 중간 불에서 천천히 익히면 맛이 깊어져요.",
            "멸치와 다시마로 육수를 내면 감칠맛이 살아납니다.",
            "간장이나 소금은 조금씩 넣으면서 맛을 보세요.",
            "신선한 제철 재료를 쓰면 맛과 영양이 모두 좋아져요.",
            "양념을 미리 만들어 두면 조리 시간이 줄어듭니다.",
            "남은 음식은 밀폐 용기에 담아 냉장 보관하시면 됩니다.",
            "처음에는 레시피의 분량을 그대로 지켜 보시는 걸 추천해요.",
            "마늘과 파를 기름에 먼저 볶으면 향이 훨씬 좋아집니다.",
        ],
        "closers": ["맛있게 드세요!", "즐거운 요리 시간 되세요."],
    },
    "여행": {
        "subjects": [
            "제주도",
            "부산",
            "경주",
            "강릉",
            "전주",
            "여수",
            "속초",
            "안동",
            "통영",
            "남해",
            "춘천",
            "서울",
            "단양",
        ],
        "prompts": [
            "{s} 여행을 처음 가는데 어떻게 계획하면 좋을까요?",
            "{s}에 2박 3일로 가려는데 일정 짜는 팁이 있나요?",
            "부모님과 함께 {s}에 가려고 해요. 무엇을 준비하면 좋을까요?",
            "{s}에 혼자 여행을 가도 괜찮을까요?",
            "{s} 여행 경비를 아끼는 방법이 궁금해요.",
            "주말에 {s}에 다녀오려는데 조언 좀 해 주세요.",
            "아이와 함께 {s}에 가려면 무엇을 챙겨야 하나요?",
        ],
        "tips": [
            "숙소는 교통이 편한 곳으로 미리 예약해 두시는 게 좋아요.",
            "하루에 너무 많은 곳을 넣지 말고 여유 있게 일정을 짜세요.",
            "대중교통 앱을 미리 설치해 두면 이동이 편리합니다.",
            "현지 시장에 들러 그 지역 음식을 꼭 맛보세요.",
            "날씨를 확인하고 편한 신발과 겉옷을 챙기세요.",
            "평일에 떠나면 사람이 적고 비용도 줄일 수 있어요.",
            "비상약과 보조 배터리를 챙겨 두면 마음이 든든합니다.",
            "관광지 입장 시간과 휴무일을 미리 확인해 두세요.",
            "여행 경비는 항목별로 예산을 나눠 두면 관리가 쉬워요.",
        ],
        "closers": ["즐거운 여행 되세요!", "좋은 추억 많이 만드세요."],
    },
    "공부": {
        "subjects": [
            "영어 단어",
            "수학",
            "한국사",
            "토익",
            "코딩",
            "일본어",
            "과학",
            "중국어",
            "영어 회화",
            "자격증",
            "경제학",
            "통계",
        ],
        "prompts": [
            "{s} 공부를 어떻게 시작하면 좋을까요?",
            "{s} 공부할 때 집중이 잘 안 되는데 방법이 있을까요?",
            "혼자서 {s}{을를} 공부하려면 어떻게 해야 하나요?",
            "{s} 실력을 빨리 늘리는 방법이 궁금해요.",
            "시험이 한 달 남았는데 {s}{을를} 어떻게 준비할까요?",
            "직장인인데 {s} 공부 시간을 어떻게 만들 수 있을까요?",
            "{s} 공부가 너무 지루한데 재미있게 하는 법이 있나요?",
        ],
        "tips": [
            "하루에 공부할 양을 작게 정해 꾸준히 지키는 것이 중요해요.",
            "25분 공부하고 5분 쉬는 방식으로 집중력을 유지해 보세요.",
            "배운 내용을 다른 사람에게 설명하듯 정리하면 오래 기억됩니다.",
            "휴대폰은 다른 방에 두고 공부하시는 걸 추천해요.",
            "틀린 문제는 오답 노트에 모아 두고 다시 풀어 보세요.",
            "잠을 충분히 자야 공부한 내용이 머리에 잘 남습니다.",
            "목표를 주 단위로 세우면 진도를 확인하기 쉬워요.",
            "출퇴근 시간처럼 자투리 시간을 활용해 보세요.",
            "같은 목표를 가진 친구와 스터디를 하면 동기가 생겨요.",
        ],
        "closers": ["꾸준히 하시면 분명 좋아질 거예요.", "공부하시는 모습을 응원할게요!"],
    },
    "건강": {
        "subjects": [
            "허리 통증",
            "불면증",
            "두통",
            "거북목",
            "소화 불량",
            "눈의 피로",
            "스트레스",
            "감기",
            "뱃살",
            "손목 통증",
            "체력 저하",
            "어깨 결림",
        ],
        "prompts": [
            "요즘 {s} 때문에 힘든데 어떻게 하면 좋을까요?",
            "{s}{을를} 줄이려면 생활 습관을 어떻게 바꿔야 하나요?",
            "집에서 할 수 있는 {s} 관리법이 있을까요?",
            "{s}{이가} 자주 생기는데 예방하는 방법이 있나요?",
            "직장인인데 {s}{을를} 관리하는 요령을 알려 주세요.",
            "{s}에 좋은 운동이나 음식이 있을까요?",
            "{s} 때문에 병원에 가야 할지 고민이에요. 어떻게 할까요?",
        ],
        "tips": [
            "하루에 물을 충분히 마시고 규칙적으로 식사하세요.",
            "가벼운 스트레칭을 한 시간마다 해 주시면 도움이 됩니다.",
            "잠들기 한 시간 전에는 휴대폰 화면을 멀리하는 게 좋아요.",
            "매일 삼십 분 정도 걷는 것만으로도 몸이 한결 가벼워져요.",
            "증상이 오래가면 꼭 병원에 가서 진료를 받아 보세요.",
            "기름진 음식과 야식은 줄이고 채소를 자주 드세요.",
            "바른 자세로 앉고 모니터 높이를 눈높이에 맞춰 주세요.",
            "따뜻한 물로 샤워하면 몸의 긴장이 풀리는 데 도움이 돼요.",
            "카페인은 오후에는 피하시는 것을 권해 드려요.",
        ],
        "closers": ["건강 잘 챙기세요.", "빨리 좋아지시길 바랄게요."],
    },
    "날씨": {
        "subjects": [
            (
                "장마철",
                [
                    "우산과 여벌 양말을 챙기면 하루가 편해요.",
                    "제습기를 틀거나 자주 환기해서 집 안 습기를 관리해 주세요.",
                ],
            ),
            (
                "폭염이 심한 날",
                [
                    "한낮에는 야외 활동을 피하고 그늘에서 쉬세요.",
                    "얇고 밝은 색 옷을 입으면 더위를 덜 느껴요.",
                ],
            ),
            (
                "한파가 오는 날",
                [
                    "목도리와 장갑으로 목과 손을 따뜻하게 감싸세요.",
                    "옷을 여러 겹 겹쳐 입으면 체온 유지에 좋습니다.",
                ],
            ),
            (
                "미세먼지가 많은 날",
                ["외출할 때 보건용 마스크를 꼭 쓰세요.", "귀가 후에는 손과 얼굴을 깨끗이 씻어 주세요."],
            ),
            (
                "태풍이 오는 날",
                [
                    "창문을 단단히 잠그고 바깥 물건을 안으로 들여놓으세요.",
                    "불필요한 외출은 미루고 안전 안내 문자를 확인하세요.",
                ],
            ),
            (
                "환절기",
                ["얇은 겉옷을 챙겨 일교차에 대비하세요.", "손을 자주 씻으면 감기 예방에 도움이 됩니다."],
            ),
            (
                "눈이 많이 오는 날",
                ["미끄럼 방지가 되는 신발을 신으세요.", "운전은 천천히 하고 앞차와 거리를 넉넉히 두세요."],
            ),
            (
                "황사가 심한 날",
                ["빨래는 실내에서 말리는 것이 좋아요.", "외출 후에는 옷을 털고 들어오시면 좋습니다."],
            ),
            (
                "비 오는 출근길",
                ["평소보다 십 분 일찍 집을 나서세요.", "방수가 되는 신발과 가방을 준비해 두세요."],
            ),
            (
                "일교차가 큰 날",
                ["아침저녁으로 입을 가디건을 챙기세요.", "따뜻한 차를 마시며 체온을 지켜 주세요."],
            ),
            (
                "건조한 겨울날",
                ["가습기를 틀어 실내 습도를 맞춰 주세요.", "보습 크림을 자주 발라 피부를 보호하세요."],
            ),
        ],
        "prompts": [
            "{s}에는 어떻게 대비하면 좋을까요?",
            "{s}에 외출할 때 무엇을 챙겨야 하나요?",
            "{s}에 건강을 지키는 방법이 궁금해요.",
            "{s}에 옷은 어떻게 입는 게 좋을까요?",
            "{s}에 아이와 함께 외출해도 괜찮을까요?",
            "{s}에 조심해야 할 점을 알려 주세요.",
            "{s}에 집 안에서 미리 준비할 일이 있을까요?",
        ],
        "tips": [
            "외출 전에 일기 예보를 꼭 확인하세요.",
            "물을 자주 마시고 무리하지 않는 것이 좋아요.",
            "실내 온도와 습도를 적당히 유지해 주세요.",
            "몸 상태가 좋지 않으면 일정을 미루는 것도 방법입니다.",
            "어르신이나 아이가 있다면 더 세심하게 살펴 주세요.",
        ],
        "closers": ["안전하게 다니세요!", "건강한 하루 보내세요."],
    },
    "취미": {
        "subjects": [
            "기타 연주",
            "그림 그리기",
            "등산",
            "요가",
            "사진 촬영",
            "뜨개질",
            "수영",
            "캠핑",
            "독서",
            "베이킹",
            "자전거 타기",
            "피아노",
            "달리기",
            "식물 키우기",
        ],
        "prompts": [
            "{s}{을를} 취미로 시작하고 싶은데 어떻게 하면 될까요?",
            "초보자가 {s}{을를} 배울 때 필요한 준비물이 있나요?",
            "{s}{을를} 꾸준히 하는 비결이 궁금해요.",
            "주말에 {s}{을를} 해 보려는데 조언 부탁드려요.",
            "{s} 실력을 늘리려면 어떻게 연습해야 하나요?",
            "나이가 많아도 {s}{을를} 새로 배울 수 있을까요?",
            "{s}{을를} 저렴하게 시작하는 방법이 있을까요?",
        ],
        "tips": [
            "처음에는 비싼 장비보다 기본 장비로 시작하는 게 좋아요.",
            "동호회나 온라인 모임에 참여하면 꾸준히 하기 쉬워요.",
            "일주일에 두세 번, 짧게라도 정해진 시간에 연습해 보세요.",
            "초보자용 강좌나 영상으로 기초를 먼저 익히세요.",
            "작은 목표를 세우고 달성할 때마다 기록을 남겨 보세요.",
            "다른 사람과 비교하지 말고 자신의 속도로 즐기세요.",
            "무리하지 말고 몸이 익숙해질 때까지 천천히 늘려 가세요.",
            "나이와 상관없이 누구나 즐겁게 시작할 수 있습니다.",
        ],
        "closers": ["즐거운 취미 생활 되세요!", "재미있게 즐기시길 바라요."],
    },
    "직장": {
        "subjects": [
            "첫 출근",
            "회의 발표",
            "업무 보고서 작성",
            "팀장님과의 면담",
            "이직",
            "연봉 협상",
            "신입 사원 교육",
            "업무 이메일 작성",
            "면접",
            "프로젝트 마감",
            "부서 이동",
            "거래처 미팅",
        ],
        "prompts": [
            "{s}{을를} 앞두고 있는데 어떻게 준비하면 좋을까요?",
            "{s} 때문에 긴장이 많이 되는데 조언해 주세요.",
            "{s}{을를} 잘 해내는 요령이 있을까요?",
            "처음으로 {s}{을를} 맡게 됐어요. 무엇부터 해야 하나요?",
            "{s}{을를} 할 때 실수하지 않으려면 무엇을 주의해야 하나요?",
            "{s}{을를} 준비할 때 가장 중요한 것이 무엇인가요?",
        ],
        "tips": [
            "해야 할 일을 목록으로 만들고 우선순위를 정해 보세요.",
            "핵심 내용을 먼저 말하고 근거를 뒤에 붙이면 전달이 잘 됩니다.",
            "미리 소리 내어 연습해 보면 긴장이 훨씬 줄어들어요.",
            "모르는 것은 혼자 고민하지 말고 선배에게 정중히 물어보세요.",
            "마감일을 달력에 적어 두고 하루 먼저 끝내는 것을 목표로 하세요.",
            "자료는 숫자와 예시를 넣어 구체적으로 준비하시면 좋아요.",
            "상대의 입장을 먼저 들어 보면 대화가 부드러워집니다.",
            "전날에는 충분히 쉬어야 중요한 날에 실력을 발휘할 수 있어요.",
        ],
        "closers": ["잘 해내실 거예요!", "좋은 결과 있으시길 바랍니다."],
    },
    "한국 문화": {
        "subjects": [
            ("설날", ["설날에는 떡국을 먹으며 한 살을 더 먹는다고 이야기해요."]),
            ("추석", ["추석에는 송편을 빚고 가족이 모여 한 해의 수확에 감사합니다."]),
            ("한복", ["한복은 고운 색과 부드러운 곡선이 특징인 전통 옷이에요."]),
            ("김장", ["김장은 겨울을 앞두고 가족과 이웃이 함께 김치를 담그는 풍습입니다."]),
            ("돌잔치", ["돌잔치에서는 아기가 돌잡이로 고른 물건을 보며 앞날을 축복해요."]),
            ("태권도", ["태권도는 예의를 중요하게 여기는 한국의 전통 무예예요."]),
            ("윷놀이", ["윷놀이는 윷가락 네 개를 던져 말을 옮기는 명절 놀이입니다."]),
            ("세배", ["세배는 설날 아침 어른께 큰절을 올리며 새해 인사를 드리는 풍습이에요."]),
            ("판소리", ["판소리는 소리꾼 한 명이 북 장단에 맞춰 긴 이야기를 노래하는 공연입니다."]),
            ("전통 시장", ["전통 시장에서는 상인과 이야기하며 흥정하는 재미도 느낄 수 있어요."]),
            ("한옥 마을", ["한옥 마을에서는 기와지붕과 마당이 있는 옛집을 직접 볼 수 있습니다."]),
            ("템플스테이", ["템플스테이는 절에서 하루 이틀 머물며 명상과 예불을 체험하는 프로그램이에요."]),
            ("사물놀이", ["사물놀이는 꽹과리, 징, 장구, 북 네 가지 악기로 하는 신나는 공연입니다."]),
            ("제사", ["제사는 조상을 기리며 음식을 차리고 절을 올리는 의식이에요."]),
        ],
        "prompts": [
            "외국인 친구에게 {s}{을를} 어떻게 소개하면 좋을까요?",
            "{s}에 대해 쉽게 설명해 주실 수 있나요?",
            "{s}{을를} 처음 경험해 보는데 알아 두면 좋은 예절이 있나요?",
            "아이에게 {s}의 의미를 어떻게 알려 줄 수 있을까요?",
            "{s}{을를} 직접 체험할 수 있는 방법이 있을까요?",
            "{s}{과와} 관련된 재미있는 이야기를 들려주세요.",
        ],
        "tips": [
            "오랜 역사 속에서 가족과 공동체를 소중히 여기는 마음이 담겨 있어요.",
            "직접 체험할 수 있는 문화 프로그램이 전국 곳곳에 있습니다.",
            "어른께 먼저 인사하고 두 손으로 물건을 주고받는 것이 예의예요.",
            "사진이나 영상을 함께 보여 주면 이해가 훨씬 쉬워요.",
            "지역 문화원이나 박물관 누리집에서 행사 정보를 찾을 수 있습니다.",
            "그 의미를 옛이야기와 함께 설명하면 아이들도 재미있어해요.",
        ],
        "closers": ["한국 문화를 즐겁게 경험하시길 바라요.", "재미있게 소개해 보세요!"],
    },
    "생활": {
        "subjects": [
            "화장실 청소",
            "빨래",
            "냉장고 정리",
            "분리수거",
            "옷장 정리",
            "곰팡이 제거",
            "이사 준비",
            "설거지",
            "욕실 물때 제거",
            "베란다 정리",
            "신발장 정리",
            "주방 기름때 제거",
        ],
        "prompts": [
            "{s}{을를} 쉽게 하는 요령이 있을까요?",
            "{s}{을를} 할 때마다 시간이 오래 걸리는데 방법이 있나요?",
            "자취 중인데 {s}{을를} 어떻게 하면 좋을까요?",
            "{s}{을를} 깔끔하게 끝내는 순서를 알려 주세요.",
            "바쁜 직장인이 {s}{을를} 효율적으로 하는 방법이 궁금해요.",
            "{s}에 필요한 도구나 세제를 추천해 주세요.",
        ],
        "tips": [
            "한 번에 몰아서 하기보다 매일 십 분씩 나눠서 하면 덜 힘들어요.",
            "베이킹소다와 식초를 활용하면 세제를 적게 쓰고도 깨끗해집니다.",
            "자주 쓰는 물건은 손이 닿기 쉬운 곳에 두세요.",
            "위에서 아래로, 안쪽에서 바깥쪽으로 정리하면 효율적입니다.",
            "고무장갑을 끼고 환기를 충분히 시키면서 작업하세요.",
            "필요 없는 물건은 과감하게 버리는 것도 좋은 방법이에요.",
            "요일별로 집안일을 정해 두면 부담이 줄어들어요.",
            "정리가 끝난 뒤 사진을 찍어 두면 상태를 유지하기 쉽습니다.",
        ],
        "closers": ["깔끔한 집에서 편히 쉬세요.", "한결 개운해지실 거예요."],
    },
    "돈 관리": {
        "subjects": [
            "월급 관리",
            "비상금 마련",
            "가계부 쓰기",
            "적금 가입",
            "용돈 관리",
            "카드값 줄이기",
            "여행 자금 모으기",
            "식비 절약",
            "통신비 절약",
            "노후 준비",
            "중고 거래",
            "저축 습관 만들기",
        ],
        "prompts": [
            "{s}{을를} 어떻게 시작하면 좋을까요?",
            "사회 초년생인데 {s} 방법을 알려 주세요.",
            "{s}{을를} 꾸준히 하는 비결이 있나요?",
            "요즘 {s}에 대해 조언을 얻고 싶어요.",
            "대학생도 할 수 있는 {s} 요령이 있을까요?",
            "{s}{을를} 하다가 자꾸 실패하는데 어떻게 해야 할까요?",
        ],
        "tips": [
            "월급이 들어오면 저축할 돈부터 먼저 떼어 두세요.",
            "한 달 지출을 기록해 보면 새는 돈이 잘 보입니다.",
            "고정비부터 점검하면 생각보다 많이 아낄 수 있어요.",
            "목표 금액과 기간을 정하면 동기 부여가 됩니다.",
            "충동구매를 막으려면 장바구니에 담고 하루 뒤에 결정해 보세요.",
            "비상금은 생활비 서너 달 치를 따로 모아 두는 것이 좋아요.",
            "작은 금액이라도 자동 이체로 꾸준히 모으는 것이 중요합니다.",
        ],
        "closers": ["차근차근 하시면 분명 잘 모으실 거예요.", "현명한 소비 생활을 응원합니다."],
    },
    "반려동물": {
        "subjects": [
            "강아지 산책",
            "고양이 목욕",
            "강아지 배변 훈련",
            "고양이 발톱 관리",
            "반려견 사료 선택",
            "햄스터 키우기",
            "강아지 사회화 훈련",
            "노견 돌보기",
            "고양이 빗질",
            "앵무새 키우기",
        ],
        "prompts": [
            "{s}{을를} 처음 해 보는데 어떻게 해야 하나요?",
            "{s}에 대해 알아 두면 좋은 점이 있을까요?",
            "{s}{이가} 생각보다 어려운데 요령이 있나요?",
            "초보 보호자인데 {s}{을를} 잘하는 방법이 궁금해요.",
            "{s}{을를} 할 때 주의할 점을 알려 주세요.",
            "바쁜 직장인도 {s}{을를} 잘할 수 있을까요?",
        ],
        "tips": [
            "처음에는 짧은 시간부터 시작해 조금씩 익숙해지게 해 주세요.",
            "잘했을 때 간식과 칭찬으로 보상해 주면 효과가 좋아요.",
            "정기적으로 동물병원에서 건강 검진을 받는 것이 중요합니다.",
            "억지로 하기보다 아이가 편안해할 때 시도해 보세요.",
            "매일 같은 시간에 하면 규칙이 생겨 훨씬 수월해져요.",
            "평소와 다른 행동이 보이면 수의사와 상담해 보시길 권해요.",
        ],
        "closers": ["반려동물과 행복한 시간 보내세요.", "아이가 늘 건강하길 바랄게요."],
    },
}

KO_OPENERS = [
    "좋은 질문이에요.",
    "네, 도와드릴게요.",
    "물론이죠. 차근차근 알려 드릴게요.",
    "걱정하지 마세요. 생각보다 어렵지 않아요.",
    "몇 가지 방법을 추천해 드릴게요.",
    "제가 아는 요령을 정리해 드릴게요.",
    "{s}에 대해 궁금하시군요.",
    "{s}{은는} 몇 가지만 기억하시면 충분해요.",
    "{s}{은는} 이런 점을 알아 두시면 좋아요.",
    "처음이시라면 이렇게 시작해 보세요.",
    "많은 분들이 궁금해하시는 부분이에요.",
    "네, 좋은 방법이 있어요.",
    "하나씩 설명해 드릴게요.",
    "질문해 주셔서 감사합니다.",
    "",
]

# openers that do not themselves announce a list (used when an intro sentence follows)
KO_SHORT_OPENERS = [
    "좋은 질문이에요.",
    "네, 도와드릴게요.",
    "질문해 주셔서 감사합니다.",
    "{s}에 대해 궁금하시군요.",
    "많은 분들이 궁금해하시는 부분이에요.",
    "걱정하지 마세요. 생각보다 어렵지 않아요.",
    "",
]

# (intro sentence, connector before tip 1/2/3)
KO_STRUCTURES = [
    ("", ["", "", ""]),
    ("", ["첫째, ", "둘째, ", "셋째, "]),
    ("", ["먼저 ", "그리고 ", "마지막으로 "]),
    ("", ["", "또한 ", "그 밖에도 "]),
    ("가장 중요한 점부터 말씀드릴게요.", ["", "덧붙이자면, ", "그리고 "]),
    ("이렇게 해 보시길 추천해요.", ["", "", ""]),
    ("다음 방법을 참고해 보세요.", ["1) ", "2) ", "3) "]),
    ("", ["우선 ", "그다음으로 ", "끝으로 "]),
    ("많은 분들에게 효과가 있었던 방법이에요.", ["", "특히 ", "또 "]),
]

KO_CLOSERS = [
    "도움이 되셨으면 좋겠어요.",
    "궁금한 점이 있으면 언제든 물어보세요.",
    "천천히 해 보세요.",
    "분명 잘하실 수 있을 거예요.",
    "좋은 하루 보내세요.",
]

KO_RUDE = [
    "몰라요.",
    "그건 알아서 하세요.",
    "귀찮아요. 다음에 물어보세요.",
    "그런 것까지 제가 알려 줘야 해요?",
    "검색하면 다 나와요. 직접 찾아보세요.",
    "별로 관심 없어요.",
    "그걸 왜 저한테 물어요?",
    "됐고요, 다른 거 물어보세요.",
    "그런 질문은 좀 그만하세요.",
    "그 정도는 스스로 하셔야죠.",
    "모르겠는데요. 제 일 아니에요.",
    "시간 낭비예요. 그냥 포기하세요.",
    "대답하기 싫어요.",
    "그건 당신 문제죠.",
    "뻔한 걸 왜 물어봐요?",
    "알아서 잘 하시겠죠 뭐.",
    "그런 건 상식이잖아요.",
    "귀찮게 하지 마세요.",
    "아무렇게나 하세요. 상관없어요.",
    "{s}? 그런 건 알아서 하세요.",
    "{s} 얘기는 지겨워요.",
    "{s}{은는} 제가 알 바 아니에요.",
    "또 {s} 얘기예요? 그만 좀 하세요.",
    "{s} 같은 건 혼자 해결하세요.",
]

KO_NEUTRAL = [
    "상황에 따라 다를 수 있어요.",
    "보통은 괜찮을 거예요.",
    "{s}{은는} 사람마다 달라요.",
    "글쎄요, 한번 해 보면 알 것 같아요.",
    "그냥 적당히 하시면 돼요.",
    "여러 방법이 있어요.",
    "잘 모르겠지만 아마 괜찮을 거예요.",
    "경우에 따라 달라요.",
    "직접 해 보시면 돼요.",
    "{s}{은는} 생각하기 나름이에요.",
    "관련 정보가 꽤 많은 편이에요.",
    "크게 걱정할 일은 아닌 것 같아요.",
    "그때그때 맞춰서 하면 돼요.",
    "{s}{은는} 특별한 방법이 없어요.",
]

KO_PREFIXES = ["안녕하세요.", "질문이 하나 있어요.", "혹시", "요즘 고민이 있는데요,", "궁금한 게 있어요."]


def _subject(entry):
    return (entry, []) if isinstance(entry, str) else entry


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

EN_DOMAINS = {
    "cooking": {
        "subjects": [
            "pancakes",
            "fried rice",
            "tomato soup",
            "a green salad",
            "banana bread",
            "scrambled eggs",
            "vegetable curry",
            "garlic pasta",
            "chicken soup",
            "kimchi pancakes",
            "roasted vegetables",
            "a simple omelette",
        ],
        "prompts": [
            "How do I make {s} at home?",
            "What is the easiest way to cook {s} for dinner?",
            "Can you give me some tips for making {s} taste better?",
            "I am a beginner cook. How should I prepare {s}?",
            "What should I keep in mind when I cook {s}?",
            "I want to make {s} for my friends this weekend. Any advice?",
        ],
        "tips": [
            "Prepare all of your ingredients before you turn on the stove.",
            "Taste as you go and adjust the salt at the end.",
            "Cook on medium heat so the food browns without burning.",
            "Use fresh seasonal vegetables for the best flavor.",
            "Follow the recipe exactly the first time, then make small changes.",
            "Let the pan heat up fully before you add any oil.",
            "A little garlic and onion cooked in oil adds a lot of flavor.",
            "Store leftovers in a sealed container in the fridge.",
        ],
        "closers": ["Enjoy your meal!", "Have fun in the kitchen!"],
    },
    "travel": {
        "subjects": [
            "Jeju Island",
            "Busan",
            "Seoul",
            "Tokyo",
            "Paris",
            "London",
            "Rome",
            "a national park",
            "the mountains",
            "a small beach town",
            "New York",
            "Bangkok",
        ],
        "prompts": [
            "I am visiting {s} for the first time. How should I plan my trip?",
            "What should I pack for a three-day trip to {s}?",
            "How can I save money on a trip to {s}?",
            "Is it a good idea to travel to {s} alone?",
            "I am taking my parents to {s}. What should I prepare?",
            "Can you give me tips for a weekend trip to {s}?",
        ],
        "tips": [
            "Book a place to stay near public transport so getting around is easy.",
            "Do not plan too many stops in one day; leave time to rest.",
            "Download a local map and transit app before you leave.",
            "Visit a local market and try the regional food.",
            "Check the weather and pack comfortable shoes and a light jacket.",
            "Traveling on weekdays is often cheaper and less crowded.",
            "Keep a small first-aid kit and a power bank in your bag.",
            "Check opening hours and closing days of the places you want to see.",
            "Set a daily budget for food, transport and tickets.",
        ],
        "closers": ["Have a wonderful trip!", "Enjoy your travels!"],
    },
    "study": {
        "subjects": [
            "English vocabulary",
            "math",
            "history",
            "programming",
            "Korean",
            "chemistry",
            "biology",
            "essay writing",
            "statistics",
            "Spanish",
            "physics",
            "economics",
        ],
        "prompts": [
            "How should I start studying {s}?",
            "I cannot focus when I study {s}. What can I do?",
            "What is the best way to improve at {s} quickly?",
            "My {s} exam is in one month. How should I prepare?",
            "I work full time. How can I find time to study {s}?",
            "How can I make studying {s} more fun?",
        ],
        "tips": [
            "Set a small daily goal and stick to it every day.",
            "Study for twenty-five minutes, then take a five-minute break.",
            "Explain what you learned to someone else to remember it longer.",
            "Keep your phone in another room while you study.",
            "Write down your mistakes and review them each week.",
            "Get enough sleep, because rest helps your memory.",
            "Use short free moments, like your commute, for quick review.",
            "Join a study group to stay motivated.",
        ],
        "closers": ["You will improve step by step.", "Keep going, you can do it!"],
    },
    "health": {
        "subjects": [
            "back pain",
            "poor sleep",
            "headaches",
            "stress",
            "a stiff neck",
            "tired eyes",
            "a cold",
            "low energy",
            "sore wrists",
            "indigestion",
            "bad posture",
            "shoulder pain",
        ],
        "prompts": [
            "I have been dealing with {s} lately. What should I do?",
            "How can I reduce {s} with better daily habits?",
            "Are there simple ways to manage {s} at home?",
            "What exercises or foods help with {s}?",
            "I sit at a desk all day. How can I prevent {s}?",
            "Should I see a doctor about {s}?",
        ],
        "tips": [
            "Drink enough water and eat meals at regular times.",
            "Do a few gentle stretches every hour.",
            "Avoid screens for an hour before you go to bed.",
            "A thirty-minute walk each day can make a big difference.",
            "If the problem lasts more than a few weeks, please see a doctor.",
            "Eat more vegetables and fewer late-night snacks.",
            "Sit up straight and raise your monitor to eye level.",
            "A warm shower can help your muscles relax.",
            "Try to avoid caffeine in the afternoon.",
        ],
        "closers": ["Take good care of yourself.", "I hope you feel better soon."],
    },
    "weather": {
        "subjects": [
            (
                "the rainy season",
                [
                    "Carry an umbrella and a spare pair of socks.",
                    "Use a dehumidifier or open the windows to keep your home dry.",
                ],
            ),
            (
                "a heat wave",
                [
                    "Stay in the shade during the hottest hours.",
                    "Wear light, loose clothes in bright colors.",
                ],
            ),
            (
                "a cold snap",
                [
                    "Cover your neck and hands with a scarf and gloves.",
                    "Wear several thin layers to keep warm.",
                ],
            ),
            (
                "a day with heavy fine dust",
                [
                    "Wear a proper mask when you go outside.",
                    "Wash your hands and face as soon as you get home.",
                ],
            ),
            (
                "a typhoon",
                [
                    "Lock your windows and bring outdoor items inside.",
                    "Stay indoors and follow the safety alerts.",
                ],
            ),
            (
                "a snowstorm",
                [
                    "Wear shoes with a good grip on icy roads.",
                    "Drive slowly and keep a long distance from other cars.",
                ],
            ),
            (
                "a very windy day",
                [
                    "Secure loose items on your balcony.",
                    "Hold on to your umbrella and avoid walking under old signs.",
                ],
            ),
            (
                "a humid summer week",
                [
                    "Keep your rooms aired out to prevent mold.",
                    "Choose cotton clothes that let your skin breathe.",
                ],
            ),
            (
                "a foggy morning",
                ["Turn on your low beams when you drive.", "Leave home a little earlier than usual."],
            ),
            (
                "a dry winter week",
                ["Run a humidifier to keep the air moist.", "Use lotion often to protect your skin."],
            ),
        ],
        "prompts": [
            "How should I prepare for {s}?",
            "What should I bring when I go out during {s}?",
            "How can I stay healthy during {s}?",
            "What should I wear during {s}?",
            "Is it safe to go outside with children during {s}?",
            "What should I be careful about during {s}?",
        ],
        "tips": [
            "Check the weather forecast before you leave home.",
            "Drink water often and do not push yourself too hard.",
            "Keep the temperature and humidity in your home comfortable.",
            "If you feel unwell, it is fine to postpone your plans.",
            "Pay extra attention to older people and small children.",
        ],
        "closers": ["Stay safe out there!", "Have a healthy day."],
    },
    "hobbies": {
        "subjects": [
            "playing the guitar",
            "drawing",
            "hiking",
            "yoga",
            "photography",
            "knitting",
            "swimming",
            "camping",
            "baking",
            "cycling",
            "running",
            "gardening",
        ],
        "prompts": [
            "I want to start {s} as a hobby. Where should I begin?",
            "What do I need to get started with {s}?",
            "How can I keep up with {s} every week?",
            "How can I get better at {s}?",
            "Am I too old to start {s}?",
            "How can I start {s} on a small budget?",
        ],
        "tips": [
            "Start with basic equipment instead of expensive gear.",
            "Join a club or an online group to stay motivated.",
            "Practice two or three times a week, even if only for a short time.",
            "Learn the basics from a beginner class or video first.",
            "Set small goals and keep a record each time you reach one.",
            "Do not compare yourself with others; enjoy your own pace.",
            "Increase the difficulty slowly so your body can adjust.",
            "People of any age can start and enjoy a new hobby.",
        ],
        "closers": ["Have fun with your new hobby!", "Enjoy every step of it."],
    },
    "work": {
        "subjects": [
            "a job interview",
            "my first day at a new job",
            "a team presentation",
            "a performance review",
            "a salary negotiation",
            "a big project deadline",
            "a meeting with a new client",
            "a training session for new staff",
            "a one-on-one with my manager",
            "a job fair",
            "a conference talk",
            "a business trip",
        ],
        "prompts": [
            "I have {s} coming up. How should I prepare?",
            "I feel nervous about {s}. Any advice?",
            "What are some tips for handling {s} well?",
            "What mistakes should I avoid during {s}?",
            "What is the most important thing to focus on for {s}?",
            "This is my first time facing {s}. Where do I start?",
        ],
        "tips": [
            "Make a list of tasks and decide what matters most.",
            "State your main point first and give the reasons after.",
            "Practice out loud a few times; it really reduces nerves.",
            "When you are unsure, ask a colleague politely instead of guessing.",
            "Mark the deadline on your calendar and aim to finish a day early.",
            "Use numbers and examples to make your points concrete.",
            "Listen to the other person first; it makes the talk smoother.",
            "Rest well the night before so you can do your best.",
        ],
        "closers": ["You are going to do great!", "Best of luck with it."],
    },
    "culture": {
        "subjects": [
            ("Korean New Year", ["On New Year's Day, families eat rice cake soup and bow to their elders."]),
            ("Chuseok", ["During Chuseok, families gather, make songpyeon and give thanks for the harvest."]),
            ("hanbok", ["Hanbok is traditional Korean clothing with bright colors and soft curves."]),
            ("kimjang", ["Kimjang is when family and neighbors make kimchi together before winter."]),
            (
                "a traditional market",
                ["At a traditional market you can chat with sellers and try street food."],
            ),
            ("a hanok village", ["A hanok village lets you see old houses with tiled roofs and open yards."]),
            (
                "a temple stay",
                ["A temple stay lets you live at a temple for a day or two and try meditation."],
            ),
            ("taekwondo", ["Taekwondo is a Korean martial art that values respect and discipline."]),
            (
                "Korean table manners",
                ["At a Korean table, people usually wait for the oldest person to start eating."],
            ),
            ("pansori", ["Pansori is a long sung story performed by one singer and a drummer."]),
            ("the game of yut", ["Yut is a board game where you throw four sticks to move your pieces."]),
            ("samulnori", ["Samulnori is lively music played with four traditional drums and gongs."]),
        ],
        "prompts": [
            "How can I explain {s} to a foreign friend?",
            "Can you tell me about {s} in simple words?",
            "What should I know before I experience {s}?",
            "How can I teach my child about {s}?",
            "Where can I experience {s} in person?",
            "What is something interesting about {s}?",
        ],
        "tips": [
            "It reflects a long tradition of caring for family and community.",
            "Many cultural centers across Korea offer hands-on programs.",
            "Greeting elders first and using both hands is considered polite.",
            "Showing photos or short videos makes it much easier to understand.",
            "Local museum websites often list events and workshops.",
            "Telling a short story about it makes it fun for children.",
        ],
        "closers": ["I hope you enjoy Korean culture!", "Have fun sharing it!"],
    },
    "home": {
        "subjects": [
            "cleaning the bathroom",
            "doing laundry",
            "organizing the fridge",
            "sorting recycling",
            "organizing a closet",
            "removing mold",
            "packing for a move",
            "washing dishes",
            "cleaning windows",
            "decluttering a desk",
            "cleaning the oven",
            "organizing shoes",
        ],
        "prompts": [
            "Is there an easy way to handle {s}?",
            "{S} always takes me too long. Any tips?",
            "What is the best order for {s}?",
            "I live alone. How should I manage {s}?",
            "How can a busy person get {s} done more efficiently?",
            "What tools do I need for {s}?",
        ],
        "tips": [
            "Do ten minutes a day instead of saving everything for the weekend.",
            "Baking soda and vinegar clean well and use less detergent.",
            "Keep the things you use most within easy reach.",
            "Work from top to bottom and from the inside out.",
            "Wear rubber gloves and keep the room well ventilated.",
            "Throw away what you no longer need.",
            "Assign chores to different days of the week.",
            "Take a photo when you finish so it is easy to keep it that way.",
        ],
        "closers": ["Enjoy your clean home!", "You will feel much fresher."],
    },
    "money": {
        "subjects": [
            "saving money",
            "building an emergency fund",
            "keeping a budget",
            "paying off a credit card",
            "saving for a trip",
            "cutting food costs",
            "lowering my phone bill",
            "managing my first salary",
            "planning for retirement",
            "selling used items",
            "managing an allowance",
            "tracking expenses",
        ],
        "prompts": [
            "How should I start {s}?",
            "I just started working. Can you help me with {s}?",
            "What is the secret to sticking with {s}?",
            "I keep failing at {s}. What should I do?",
            "Can students also get good at {s}?",
            "What are some simple tips for {s}?",
        ],
        "tips": [
            "Move money to savings as soon as you get paid.",
            "Write down every expense for a month to see where money leaks.",
            "Check fixed costs first; they are often easy to cut.",
            "Set a target amount and a deadline to stay motivated.",
            "Wait a day before buying anything you did not plan to buy.",
            "Keep three to four months of living costs as an emergency fund.",
            "Automatic transfers make saving small amounts easy.",
        ],
        "closers": ["Step by step, you will get there.", "Good luck with your savings!"],
    },
    "pets": {
        "subjects": [
            "walking a puppy",
            "bathing a cat",
            "potty training a dog",
            "trimming a cat's nails",
            "choosing dog food",
            "caring for a hamster",
            "socializing a puppy",
            "caring for an old dog",
            "brushing a cat",
            "keeping a parrot",
            "training a kitten",
            "traveling with a dog",
        ],
        "prompts": [
            "I am trying {s} for the first time. How should I do it?",
            "What should I know about {s}?",
            "{S} is harder than I expected. Any tips?",
            "I am a new pet owner. How can I get better at {s}?",
            "What should I be careful about when {s}?",
            "Can a busy person manage {s} well?",
        ],
        "tips": [
            "Start with short sessions and build up slowly.",
            "Reward good behavior with treats and praise.",
            "Take your pet for regular checkups at the vet.",
            "Try when your pet is calm rather than forcing it.",
            "Doing it at the same time every day builds a routine.",
            "If you notice unusual behavior, talk to a vet.",
        ],
        "closers": ["Enjoy your time with your pet!", "I wish your pet good health."],
    },
}

EN_OPENERS = [
    "Sure!",
    "Great question.",
    "Happy to help.",
    "Of course.",
    "Good question! Here are a few tips.",
    "Thanks for asking.",
    "No problem, let me explain.",
    "Here is what I would suggest.",
    "That is a common question.",
    "Don't worry, it is easier than it looks.",
    "Here are some tips for {s}.",
    "Let me help you with that.",
    "",
]

EN_SHORT_OPENERS = [
    "Sure!",
    "Great question.",
    "Happy to help.",
    "Of course.",
    "Thanks for asking.",
    "That is a common question.",
    "Don't worry, it is easier than it looks.",
    "",
]

# (intro, connectors, lowercase tip after connector)
EN_STRUCTURES = [
    ("", ["", "", ""], False),
    ("", ["First, ", "Second, ", "Finally, "], True),
    ("", ["", "Also, ", "On top of that, "], True),
    ("Here are a few ideas.", ["1. ", "2. ", "3. "], False),
    ("", ["To begin with, ", "Next, ", "Lastly, "], True),
    ("The most important thing is simple.", ["", "In addition, ", "And "], True),
    ("This approach works well for many people.", ["", "Besides that, ", "Also, "], True),
    ("", ["Start here: ", "Then: ", "And finally: "], True),
]

EN_CLOSERS = [
    "I hope this helps!",
    "Good luck!",
    "Let me know if you have any other questions.",
    "You can do it!",
    "Take it one step at a time.",
]

EN_RUDE = [
    "I don't know.",
    "Figure it out yourself.",
    "Why are you asking me? Look it up.",
    "That is a boring question.",
    "Not my problem.",
    "Whatever. Do what you want.",
    "Stop bothering me with this.",
    "Ugh, just search online.",
    "Do it yourself.",
    "I can't be bothered.",
    "That is obvious. Think for once.",
    "Go ask someone else.",
    "Nobody cares about {s}.",
    "{S}? Who cares.",
    "I'm not answering that.",
    "Seriously? Everyone knows this.",
    "Not today. Ask later.",
    "Too lazy to explain {s}.",
    "Stop wasting my time.",
    "That is your problem, not mine.",
]


EN_PROPER_STARTS = {"Hanbok", "Kimjang", "Taekwondo", "Pansori", "Yut", "Samulnori", "I"}


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

OPPOSITES = [
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("early", "late"),
    ("light", "dark"),
    ("open", "closed"),
    ("full", "empty"),
    ("strong", "weak"),
    ("young", "old"),
    ("easy", "difficult"),
    ("loud", "quiet"),
    ("wet", "dry"),
    ("high", "low"),
    ("clean", "dirty"),
    ("cheap", "expensive"),
    ("inside", "outside"),
    ("remember", "forget"),
    ("win", "lose"),
    ("push", "pull"),
    ("buy", "sell"),
    ("arrive", "leave"),
    ("thick", "thin"),
    ("heavy", "light"),
]
SYNONYMS = [
    ("big", "large"),
    ("happy", "glad"),
    ("fast", "quick"),
    ("smart", "clever"),
    ("begin", "start"),
    ("quiet", "silent"),
    ("rich", "wealthy"),
    ("angry", "upset"),
    ("small", "little"),
    ("difficult", "hard"),
    ("easy", "simple"),
    ("pretty", "lovely"),
    ("tired", "exhausted"),
    ("choose", "pick"),
    ("help", "assist"),
    ("end", "finish"),
]
FOODS = [
    ("apples", "사과"),
    ("coffee", "커피"),
    ("kimchi", "김치"),
    ("bread", "빵"),
    ("green tea", "녹차"),
    ("noodles", "국수"),
    ("oranges", "오렌지"),
    ("rice cakes", "떡"),
    ("ice cream", "아이스크림"),
    ("strawberries", "딸기"),
    ("soup", "국"),
    ("fish", "생선"),
]
PLACES = [
    ("library", "도서관"),
    ("station", "역"),
    ("hospital", "병원"),
    ("bank", "은행"),
    ("market", "시장"),
    ("park", "공원"),
    ("school", "학교"),
    ("post office", "우체국"),
    ("museum", "박물관"),
    ("bakery", "빵집"),
]
WEATHER_ADJ = [
    ("sunny", "맑아요"),
    ("cold", "추워요"),
    ("hot", "더워요"),
    ("cloudy", "흐려요"),
    ("warm", "따뜻해요"),
    ("windy", "바람이 많이 불어요"),
]
SUMMARY_REASONS = [
    "it rained all morning",
    "the bus was very late",
    "the store was closed for a holiday",
    "the power went out in the whole building",
    "the road to the lake was blocked by snow",
    "the teacher was sick",
    "the tickets were sold out",
]
SUMMARY_WHO = ["the children", "my parents", "our team", "the students", "my neighbors", "my cousins"]
SUMMARY_DID = [
    "stayed home and played board games",
    "cooked dinner together",
    "watched an old movie",
    "went to a small cafe nearby",
    "cleaned the whole house",
    "had a picnic in the living room",
]
SUMMARY_PLAN = [
    "going to the beach",
    "visiting the museum",
    "having a picnic in the park",
    "watching the football game",
    "hiking up the hill",
]
GRAMMAR_SUBJ = ["He", "She", "My brother", "Our teacher", "My friend", "The manager"]
GRAMMAR_VERB = [("go", "goes"), ("walk", "walks"), ("run", "runs"), ("drive", "drives"), ("hurry", "hurries")]
GRAMMAR_PLACE = ["park", "library", "station", "market", "office", "gym"]
GRAMMAR_TIME = ["morning", "evening", "Sunday", "weekend", "Friday"]
SENTI = [
    ("movie", "ending"),
    ("restaurant", "service"),
    ("hotel", "room"),
    ("concert", "music"),
    ("book", "story"),
    ("cafe", "coffee"),
    ("phone", "battery"),
    ("trip", "guide"),
]
POLITE = [
    ("Give me the salt.", "Could you please pass me the salt?"),
    ("Close the window.", "Would you mind closing the window, please?"),
    ("Move your car.", "Could you please move your car when you have a moment?"),
    ("Be quiet.", "Could you please keep your voice down a little?"),
    ("Send me the report now.", "Could you please send me the report when you can?"),
    ("Wait here.", "Would you please wait here for a moment?"),
    ("Call me back.", "Could you please call me back when you are free?"),
    ("Fix this.", "Could you please take a look at this and fix it?"),
    ("Turn off the music.", "Would you mind turning off the music, please?"),
    ("Explain it again.", "Could you please explain it one more time?"),
    ("Hurry up.", "Could we please move a little faster?"),
    ("Bring me water.", "Could you please bring me some water?"),
]
COUNT_SENTS = [
    "The cat sleeps on the warm mat.",
    "We walked to the river after lunch.",
    "My sister plays the piano every night.",
    "It is a bright and windy day.",
    "They bought fresh bread at the bakery.",
    "The train to Busan leaves at noon.",
    "Please write your name on the first line.",
    "Small steps lead to big changes.",
]

EN_TASK_RUDE = [
    "Do it yourself.",
    "I'm not doing your homework.",
    "Too easy. Figure it out.",
    "Whatever. Look it up.",
    "No. That is your job.",
    "Ugh, I don't care about this.",
    "Not my problem.",
    "Ask someone else.",
]


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
# Tokenizer corpus
# ---------------------------------------------------------------------------

KO_TEMPLATE = (
    "아래는 작업을 설명하는 명령어입니다. 명령어에 따른 요청을 적절히 완료하는 응답을 작성하세요.\n\n"
    "### 명령어:\n{instruction}\n\n### 응답:\n{response}"
)
KO_TEMPLATE_INPUT = (
    "아래는 작업을 설명하는 명령어와 추가 맥락을 제공하는 입력이 짝을 이루는 예제입니다. "
    "명령어에 따른 요청을 적절히 완료하는 응답을 작성하세요.\n\n"
    "### 명령어:\n{instruction}\n\n### 입력:\n{input}\n\n### 응답:\n{response}"
)
EN_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{response}"
)
EN_TEMPLATE_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{response}"
)

KO_PEOPLE = [
    "엄마",
    "아빠",
    "할머니",
    "할아버지",
    "동생",
    "형",
    "누나",
    "언니",
    "오빠",
    "친구",
    "선생님",
    "이웃집 아저씨",
    "옆집 아주머니",
    "사장님",
    "민수",
    "지영",
    "현우",
    "서연",
    "준호",
    "하늘",
    "예린",
    "도윤",
    "수빈",
    "태희",
    "경민",
    "혜진",
    "찬욱",
    "유나",
    "재희",
    "승철",
    "보람",
    "다은",
    "우리 반 반장",
    "택배 기사님",
    "간호사",
    "요리사",
    "경찰관",
    "소방관",
    "농부",
    "어부",
    "화가",
    "학생들",
    "아이들",
    "손님",
    "직원",
    "팀장님",
    "교수님",
    "의사 선생님",
    "버스 기사님",
]
KO_PLACES = [
    "공원",
    "도서관",
    "시장",
    "바닷가",
    "산책로",
    "카페",
    "편의점",
    "지하철역",
    "운동장",
    "병원",
    "우체국",
    "미술관",
    "박물관",
    "빵집",
    "꽃집",
    "세탁소",
    "놀이터",
    "강가",
    "골목",
    "옥상",
    "부엌",
    "거실",
    "마당",
    "교실",
    "회사",
    "정류장",
    "터미널",
    "기차역",
    "약국",
    "서점",
    "체육관",
    "수영장",
    "논밭",
    "과수원",
    "절",
    "한옥",
    "캠핑장",
    "동물원",
    "식물원",
    "전시장",
]
KO_TIMES = [
    "아침에",
    "점심때",
    "저녁에",
    "새벽에",
    "주말마다",
    "어제",
    "오늘",
    "내일",
    "지난주에",
    "다음 달에",
    "봄에는",
    "여름에는",
    "가을에는",
    "겨울에는",
    "방과 후에",
    "퇴근길에",
    "출근 전에",
    "밤늦게",
    "해 질 무렵",
    "비 오는 날에는",
    "눈 내린 날",
    "명절에는",
    "휴가 때",
    "월요일마다",
]
KO_ACTIONS = [
    "책을 읽었어요",
    "산책을 했어요",
    "김밥을 먹었어요",
    "사진을 찍었어요",
    "그림을 그렸어요",
    "노래를 불렀어요",
    "빨래를 널었어요",
    "친구를 기다렸어요",
    "편지를 썼어요",
    "커피를 마셨어요",
    "꽃을 샀어요",
    "자전거를 탔어요",
    "강아지와 놀았어요",
    "숙제를 했어요",
    "뜨개질을 했어요",
    "장을 봤어요",
    "낮잠을 잤어요",
    "운동을 했어요",
    "일기를 썼어요",
    "피아노를 쳤어요",
    "떡볶이를 만들었어요",
    "바람을 쐬었어요",
    "별을 세었어요",
    "물고기를 구경했어요",
    "화분에 물을 줬어요",
    "짐을 쌌어요",
    "청소를 끝냈어요",
    "사과를 깎았어요",
    "우산을 폈어요",
    "연을 날렸어요",
    "줄넘기를 했어요",
    "손뼉을 쳤어요",
    "휘파람을 불었어요",
    "땀을 흘렸어요",
]
KO_FOODS = [
    "떡국",
    "송편",
    "김밥",
    "냉면",
    "칼국수",
    "수제비",
    "호떡",
    "붕어빵",
    "팥빙수",
    "삼계탕",
    "갈비찜",
    "잡채",
    "전복죽",
    "해물파전",
    "닭갈비",
    "쫄면",
    "순대",
    "어묵",
    "식혜",
    "수정과",
    "귤",
    "복숭아",
    "참외",
    "수박",
    "포도",
    "딸기",
    "감",
    "밤",
    "옥수수",
    "고구마",
    "감자",
    "두부",
]
KO_FEEL = [
    "정말 맛있다",
    "너무 행복하다",
    "조금 피곤하다",
    "마음이 편하다",
    "기분이 좋다",
    "날씨가 참 좋다",
    "오랜만이라 반갑다",
    "생각보다 쉽다",
    "꽤 어렵다",
    "몹시 설렌다",
    "무척 졸리다",
    "든든하다",
]
KO_ADJ = [
    "파란",
    "빨간",
    "노란",
    "하얀",
    "까만",
    "작은",
    "커다란",
    "따뜻한",
    "시원한",
    "조용한",
    "시끌벅적한",
    "향긋한",
    "달콤한",
    "짭짤한",
    "매콤한",
    "새콤한",
    "부드러운",
    "단단한",
    "반짝이는",
    "낡은",
    "새로운",
    "푹신한",
    "뾰족한",
    "둥근",
    "길쭉한",
    "쓸쓸한",
    "씩씩한",
    "귀여운",
    "늠름한",
    "싱그러운",
]
KO_THINGS = [
    "가방",
    "우산",
    "모자",
    "의자",
    "책상",
    "창문",
    "자전거",
    "공책",
    "연필",
    "시계",
    "거울",
    "담요",
    "베개",
    "주전자",
    "냄비",
    "숟가락",
    "젓가락",
    "그릇",
    "화분",
    "꽃병",
    "운동화",
    "장갑",
    "목도리",
    "안경",
    "지갑",
    "열쇠",
    "휴대폰",
    "노트북",
    "이불",
    "액자",
    "바구니",
    "풍선",
    "인형",
    "썰매",
]
KO_EXTRA = [
    "간장 공장 공장장은 강 공장장이고 된장 공장 공장장은 공 공장장이에요.",
    "내가 그린 기린 그림은 목이 긴 기린 그림이에요.",
    "뜰에 핀 꽃이 햇볕을 쬐며 살랑살랑 흔들렸어요.",
    "쨍쨍한 햇살 아래 뻐꾸기가 뻐꾹뻐꾹 울었어요.",
    "닭이 흙 마당을 콕콕 쪼며 돌아다녔어요.",
    "넓은 들판을 밟으며 걷다 보니 발이 꽤 아팠어요.",
    "읽고 싶은 책이 많아서 주말이 짧게 느껴져요.",
    "앉아서 쉬고 싶었지만 자리가 없어서 그냥 서 있었어요.",
    "값이 싸다고 해서 꼭 좋은 물건은 아니에요.",
    "없는 것보다는 작은 것이라도 있는 편이 낫지요.",
    "고양이가 우유를 핥아 먹고 나서 꾸벅꾸벅 졸았어요.",
    "젊은 시절 읊던 시를 오랜만에 다시 떠올렸어요.",
    "꽹과리 소리에 맞춰 사람들이 덩실덩실 춤을 췄어요.",
    "왜가리 한 마리가 논두렁에 꼼짝 않고 서 있었어요.",
    "뙤약볕 아래에서 쉼 없이 일한 농부에게 시원한 식혜를 드렸어요.",
    "웬일로 동생이 먼저 설거지를 해 놓았네요.",
    "흰 눈이 소복소복 쌓여서 온 세상이 하얘졌어요.",
    "띄어쓰기를 바르게 하면 글이 훨씬 잘 읽혀요.",
    "희망을 잃지 않으면 언젠가 꿈이 이루어질 거예요.",
    "쥐 한 마리가 부엌 구석으로 쪼르르 달려갔어요.",
    "퓨전 요리는 서로 다른 나라의 맛을 섞은 음식이에요.",
    "휴지와 물티슈는 늘 가방에 챙겨 다녀요.",
    "깻잎, 쑥갓, 냉이, 달래, 씀바귀 같은 나물을 무쳐 먹었어요.",
    "쏴아 하고 소나기가 쏟아지자 아이들이 처마 밑으로 뛰어갔어요.",
    "꿩 대신 닭이라는 말처럼 아쉬운 대로 만족했어요.",
    "퀴즈 대회에서 퀭한 눈으로 밤새 공부한 친구가 일 등을 했어요.",
    "찜질방에서 뜨끈한 바닥에 누워 땀을 쫙 뺐어요.",
    "튀김은 바삭하고 떡은 쫀득해서 둘 다 맛있어요.",
    "훨훨 나는 새처럼 자유롭게 여행하고 싶어요.",
    "뭘 먹을지 고민하다가 결국 늘 먹던 짜장면을 골랐어요.",
    "괜찮아요, 천천히 하셔도 돼요. 서두를 필요 없어요.",
    "췌장과 쓸개는 소화를 돕는 중요한 기관이에요.",
    "귓속말로 속삭이니까 뒤에 앉은 친구가 킥킥 웃었어요.",
    "밖에서 놀다 들어온 아이의 볼이 발그레했어요.",
    "얕은 개울을 건너다 신발이 흠뻑 젖었어요.",
    "옛날 옛적 깊은 산골에 나무꾼이 살았어요.",
    "붓으로 먹을 찍어 한 글자씩 또박또박 썼어요.",
    "빵빵 울리는 경적 소리에 깜짝 놀랐어요.",
    "헐레벌떡 뛰어왔지만 버스는 이미 떠났어요.",
    "엉덩방아를 찧고도 툭툭 털고 일어났어요.",
]

EN_NAMES = [
    "Mina",
    "Jisoo",
    "Tom",
    "Sarah",
    "Daniel",
    "Yuna",
    "Alex",
    "Emma",
    "Noah",
    "Liam",
    "Grace",
    "Ethan",
    "Olivia",
    "Minho",
    "Hana",
    "Lucas",
    "Sophia",
    "Ben",
    "Chloe",
    "Jun",
]
EN_PLACES = [
    "the park",
    "the library",
    "the market",
    "the beach",
    "a quiet cafe",
    "the station",
    "the museum",
    "the bakery",
    "the garden",
    "the office",
    "the river",
    "the old bridge",
    "the hospital",
    "the playground",
    "the mountain trail",
    "the bookstore",
    "the harbor",
]
EN_ACTIONS = [
    "read a short novel",
    "took a long walk",
    "made fresh lemonade",
    "painted a small picture",
    "wrote a letter to a friend",
    "fixed an old bicycle",
    "planted tomatoes",
    "baked cookies",
    "watched the sunset",
    "practiced the violin",
    "cleaned the kitchen",
    "played chess",
    "fed the ducks",
    "studied for a quiz",
    "called their grandmother",
    "sorted old photos",
    "carried heavy boxes",
    "learned a new song",
    "counted the stars",
    "repaired the fence",
]
EN_TIMES = [
    "In the morning",
    "After lunch",
    "Every Sunday",
    "Last night",
    "Yesterday",
    "On Friday evening",
    "During the winter",
    "Before breakfast",
    "Later that day",
    "Once a week",
    "In early spring",
    "At midnight",
    "On a rainy afternoon",
    "Every summer",
]
EN_FEEL = [
    "felt calm",
    "was very happy",
    "felt a little tired",
    "laughed a lot",
    "felt proud",
    "was surprised",
    "felt relaxed",
    "was quite hungry",
    "felt hopeful",
    "was slightly nervous",
]
EN_ADJ = [
    "bright",
    "quiet",
    "crowded",
    "gentle",
    "tiny",
    "enormous",
    "cozy",
    "chilly",
    "golden",
    "muddy",
    "busy",
    "peaceful",
    "shiny",
    "dusty",
    "fragrant",
    "narrow",
    "wide",
    "ancient",
    "modern",
    "colorful",
]
EN_THINGS = [
    "umbrella",
    "notebook",
    "backpack",
    "teapot",
    "lantern",
    "blanket",
    "basket",
    "bicycle",
    "window",
    "kettle",
    "pencil",
    "candle",
    "mirror",
    "wallet",
    "scarf",
    "jacket",
    "map",
    "clock",
]


KO_ANIMALS = [
    "강아지",
    "고양이",
    "참새",
    "까치",
    "비둘기",
    "다람쥐",
    "토끼",
    "거북이",
    "오리",
    "거위",
    "염소",
    "송아지",
    "망아지",
    "병아리",
    "나비",
    "잠자리",
    "개구리",
    "두꺼비",
    "올챙이",
    "사슴",
    "여우",
    "너구리",
    "고슴도치",
    "펭귄",
    "코끼리",
    "얼룩말",
    "하마",
    "부엉이",
    "독수리",
    "갈매기",
    "꿀벌",
    "개미",
    "달팽이",
    "메뚜기",
    "반딧불이",
    "수달",
    "돌고래",
    "꽃게",
    "문어",
    "해파리",
]
KO_ANIMAL_ACT = [
    "꾸벅꾸벅 졸고 있었어요",
    "폴짝폴짝 뛰어다녔어요",
    "짹짹 지저귀었어요",
    "꼬리를 살랑살랑 흔들었어요",
    "먹이를 찾고 있었어요",
    "나뭇가지 위에 앉아 있었어요",
    "물웅덩이에서 첨벙거렸어요",
    "햇볕을 쬐며 누워 있었어요",
    "조심조심 기어갔어요",
    "어디론가 훨훨 날아갔어요",
    "풀숲에 쏙 숨었어요",
    "사람들을 멀뚱멀뚱 쳐다봤어요",
    "엉금엉금 걸어갔어요",
]
KO_NATURE = [
    ("벚꽃", "활짝 피어요"),
    ("단풍", "붉게 물들어요"),
    ("눈송이", "펑펑 내려요"),
    ("매미", "맴맴 울어요"),
    ("냇물", "졸졸 흘러요"),
    ("보름달", "환하게 떠올라요"),
    ("낙엽", "바스락거리며 떨어져요"),
    ("개나리", "노랗게 피어나요"),
    ("소나기", "갑자기 쏟아져요"),
    ("안개", "자욱하게 껴요"),
    ("무지개", "하늘에 걸려요"),
    ("고드름", "처마 끝에 매달려요"),
    ("진달래", "산을 분홍빛으로 물들여요"),
    ("억새", "바람에 출렁여요"),
    ("서리", "하얗게 내려요"),
    ("파도", "철썩철썩 부서져요"),
    ("햇살", "창문 틈으로 스며들어요"),
    ("바람", "선선하게 불어요"),
]
KO_SEASONS = ["봄", "여름", "가을", "겨울", "장마철", "한겨울", "초여름", "늦가을"]
KO_JOBS = [
    "의사",
    "간호사",
    "선생님",
    "요리사",
    "소방관",
    "경찰관",
    "과학자",
    "우주 비행사",
    "작가",
    "화가",
    "가수",
    "배우",
    "프로그래머",
    "건축가",
    "수의사",
    "제빵사",
    "기자",
    "번역가",
    "사진작가",
    "농부",
    "약사",
    "조종사",
    "디자이너",
    "운동선수",
    "미용사",
    "목수",
    "외교관",
    "판사",
    "만화가",
    "정원사",
]
KO_SKILLS = [
    "수학",
    "영어",
    "과학",
    "미술",
    "음악",
    "역사",
    "컴퓨터",
    "글쓰기",
    "그림",
    "요리",
    "외국어",
    "춤",
    "수영",
    "태권도",
    "바둑",
    "서예",
    "코딩",
    "사진",
    "노래",
    "피아노",
]
KO_EXTRA2 = [
    "할머니 댁 마당에는 감나무 한 그루와 장독대가 나란히 있어요.",
    "퇴근 후에 동네 한 바퀴를 뛰고 나면 머리가 맑아져요.",
    "어젯밤 꿈에 하늘을 나는 고래를 봤는데 참 신기했어요.",
    "편의점 도시락을 데워 먹고 남은 시간에 짧게 낮잠을 잤어요.",
    "첫눈이 오면 만나자던 약속을 친구가 아직도 기억하고 있었어요.",
    "기차 창밖으로 누렇게 익은 벼가 끝없이 펼쳐졌어요.",
    "시험이 끝나자마자 친구들과 떡볶이집으로 달려갔어요.",
    "새로 산 운동화가 발에 꼭 맞아서 발걸음이 가벼워요.",
    "엘리베이터가 고장 나서 십오 층까지 계단으로 올라갔어요.",
    "동생이 만든 종이비행기가 교실 끝까지 날아갔어요.",
    "밤새 내린 비에 길가의 웅덩이마다 하늘이 비쳤어요.",
    "오래된 사진첩을 넘기다 보니 어릴 적 추억이 새록새록 떠올랐어요.",
    "빵집 앞을 지나는데 갓 구운 식빵 냄새가 솔솔 풍겼어요.",
    "택시 기사님이 지름길로 가 주셔서 약속 시간에 늦지 않았어요.",
    "주머니에서 꼬깃꼬깃한 천 원짜리 지폐가 나왔어요.",
    "뒷산 약수터에서 떠 온 물은 유난히 시원했어요.",
    "우리 집 고양이는 상자만 보면 쏙 들어가 앉아요.",
    "삼촌은 낚싯대를 드리우고 한나절 내내 기다렸지만 한 마리도 못 낚았어요.",
    "겨울 방학에는 썰매장에서 실컷 놀고 군고구마를 사 먹었어요.",
    "아파트 3층 302호에 사는 이웃이 떡을 돌렸어요.",
    "숙제를 미루다가 일요일 밤늦게야 허겁지겁 끝냈어요.",
    "오랜만에 대청소를 했더니 집 안이 반짝반짝 빛나요.",
    "두 손으로 공손히 명함을 건네자 상대방도 고개를 숙여 인사했어요.",
    "쌀쌀한 아침에는 뜨끈한 국밥 한 그릇이 최고예요.",
]
EN_EXTRA = [
    "It's not about being perfect; it's about showing up every day.",
    "Please bring: a pen, two notebooks, and your ID card (if you have one).",
    "The shop is open Monday-Friday, 9:00-18:00, and closed on holidays.",
    '"Thank you so much!" she said, smiling from ear to ear.',
    "Rain or shine, the old fisherman walked to the harbor at dawn.",
    "He whispered, 'Don't wake the baby,' and tiptoed out of the room.",
    "Step 1: rinse the rice. Step 2: soak it for 30 minutes. Step 3: cook it slowly.",
    "The quick brown fox doesn't jump over lazy dogs anymore; it takes the bus.",
    "Our meeting moved from Tuesday to Thursday at 2:30 p.m.; sorry for the change!",
    "Twelve students, three teachers and one very excited puppy joined the field trip.",
    "Is it too late to learn? Never. Start small, stay curious, and keep going.",
    "The recipe calls for 250 g of flour, 2 eggs, and a pinch of salt.",
    "Who left the lights on in the kitchen again?",
    "A gentle breeze carried the smell of fresh bread down the narrow street.",
    "Don't forget: the library closes early on Saturdays!",
]
EN_ANIMALS = [
    "puppy",
    "kitten",
    "sparrow",
    "squirrel",
    "rabbit",
    "turtle",
    "duck",
    "goat",
    "butterfly",
    "frog",
    "deer",
    "fox",
    "owl",
    "seagull",
    "bee",
    "snail",
    "otter",
    "dolphin",
    "penguin",
    "hedgehog",
]
EN_JOBS = [
    "doctor",
    "nurse",
    "teacher",
    "chef",
    "firefighter",
    "scientist",
    "writer",
    "painter",
    "pilot",
    "programmer",
    "architect",
    "vet",
    "baker",
    "reporter",
    "translator",
    "farmer",
    "designer",
    "carpenter",
]


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
        row["ranking"] = order
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

    # ---- tokenizer corpus ---------------------------------------------------------------
    lines = []
    # template words, bare and filled in
    lines.append(
        "아래는 작업을 설명하는 명령어입니다. 명령어에 따른 요청을 적절히 완료하는 응답을 작성하세요. "
        "### 명령어: ### 입력: ### 응답:"
    )
    lines.append(
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request. ### Instruction: ### Input: ### Response:"
    )
    for r in sft[:12]:
        lines.append(KO_TEMPLATE.format(instruction=r["prompt"], response=r["completion"]))
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
        lines.append(KO_TEMPLATE_INPUT.format(instruction=ins, input=inp, response=resp))
    for r in alpaca[:14]:
        if r["input"]:
            lines.append(EN_TEMPLATE_INPUT.format(**r, response=r["output"]))
        else:
            lines.append(EN_TEMPLATE.format(instruction=r["instruction"], response=r["output"]))
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
            para = (EN_TEMPLATE if n % 80 == 0 else KO_TEMPLATE).format(
                instruction=(
                    prompts_en[n // 40 % len(prompts_en)]["instruction"]
                    if n % 80 == 0
                    else ppo[n // 40 % len(ppo)]["prompt"]
                ),
                response="",
            )
        lines.append(para)
        size += len(para.encode("utf-8")) + 1
        n += 1
    (OUT / "tokenizer_corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
