"""Simple facts from licensed packages, asked in many phrasings (phrasing.py): capitals, chemical
elements, young and groups of animals and everyday opposites from the BSD games' quiz files;
short encyclopedia answers from Wikipedia summaries; one-liner jokes. Pure functions: package
files in, problems or dialogues out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from model.corpus.lexicon import ANTONYM_FAMILIES
from model.corpus.phrasing import Kind, Problem, family
from model.data import Messages

CAPITAL = Kind(
    name="capital",
    computed=False,
    families=(
        family(
            "what_is",
            "What is the capital of {place}?",
            "What's the capital of {place}?",
            "capital of {place}",
        ),
        family("which_city", "Which city is the capital of {place}?", "What city is the capital of {place}?"),
        family("tell_me", "Tell me the capital of {place}.", "Tell me what the capital of {place} is."),
        family("can_you", "Can you tell me the capital of {place}?", "Do you know the capital of {place}?"),
        family("name", "Name the capital of {place}.", "{place}: what is its capital?"),
        family("where", "Where is the capital of {place}?", "What is {place}'s capital city?", held_out=True),
    ),
)
ELEMENT = Kind(
    name="element",
    computed=False,
    families=(
        family(
            "symbol_of",
            "What is the chemical symbol for {name}?",
            "What's the symbol for {name}?",
            "symbol of {name}",
        ),
        family("which", "Which symbol stands for {name}?", "What symbol does {name} have?"),
        family("tell_me", "Tell me the chemical symbol for {name}.", "Tell me the symbol of {name}."),
        family(
            "can_you", "Can you tell me the symbol for {name}?", "Do you know the chemical symbol of {name}?"
        ),
        family(
            "how_written", "How is {name} written in chemistry?", "{name}: what is its symbol?", held_out=True
        ),
    ),
)
BABY = Kind(
    name="baby_animal",
    computed=False,
    families=(
        family(
            "called",
            "What is a baby {animal} called?",
            "What's a baby {animal} called?",
            "baby {animal} is called what",
        ),
        family("young", "What do you call a young {animal}?", "What is a young {animal} called?"),
        family("tell_me", "Tell me what a baby {animal} is called.", "Tell me the name for a baby {animal}."),
        family(
            "can_you",
            "Can you tell me what a baby {animal} is called?",
            "Do you know what a baby {animal} is called?",
        ),
        family("name", "What is the name for a baby {animal}?", "Name a baby {animal}.", held_out=True),
    ),
)
GROUP = Kind(
    name="animal_group",
    computed=False,
    families=(
        family(
            "called",
            "What is a group of {many} called?",
            "What's a group of {many} called?",
            "group of {many}",
        ),
        family("you_call", "What do you call a group of {many}?", "What is the word for a group of {many}?"),
        family(
            "tell_me", "Tell me what a group of {many} is called.", "Tell me the name for a group of {many}."
        ),
        family(
            "can_you",
            "Can you tell me what a group of {many} is called?",
            "Do you know what a group of {many} is called?",
        ),
        family(
            "collective",
            "What is the collective noun for {many}?",
            "{many} together are called what?",
            held_out=True,
        ),
    ),
)
OPPOSITE = Kind(name="opposite", computed=False, word_fields=("w",), families=ANTONYM_FAMILIES)
WIKI = Kind(
    name="encyclopedia",
    computed=False,
    families=(
        family("what_is", "{what} {title}?", "{what} {title}"),
        family(
            "tell_me", "Tell me about {title}.", "tell me about {title}", "Tell me something about {title}."
        ),
        family("can_you", "Can you tell me about {title}?", "Could you tell me about {title}?"),
        family("know", "What do you know about {title}?", "Do you know anything about {title}?"),
        family("explain", "Explain {title}.", "Give me a short summary of {title}."),
        family("describe", "Describe {title}.", "I'd like to know about {title}.", held_out=True),
    ),
)
QUIZ = (CAPITAL, ELEMENT, BABY, GROUP, OPPOSITE)
# entries left out: disputed places, and pairs that are not opposites or not for a chatbot
SKIP = {"Abkhazia", "South Ossetia", "Rep. Congo", "operating companies", "yin", "if", "from", "with"}


def quiz_answer(text: str) -> str:
    """The main answer of a quiz field: the first of its alternatives ("Vienna|Wien"), optional parts
    kept ("Brussel{s}") unless they open it ("{The }Gambia"), the first choice in brackets
    ("Rom[e|a]") but the plain letter, the last, where the first spells an accent ("Reykjav['i|i'|i]k")."""
    text = re.sub(r"^\{[^{}]*(\{[^{}]*\}[^{}]*)*\}", "", text)  # "{{People's }Republic of }China" -> "China"
    depth, cut = 0, len(text)
    for i, ch in enumerate(text):
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "|" and depth == 0:
            cut = i
            break
    text = text[:cut]

    def choice(m: re.Match) -> str:
        options = m.group(1).split("|")
        return options[-1] if re.search(r"['^~,°/`]", options[0]) else options[0]

    for pattern, pick in ((r"\[([^\[\]]*)\]", choice), (r"\{([^{}]*)\}", lambda m: m.group(1).split("|")[0])):
        while (done := re.sub(pattern, pick, text)) != text:
            text = done
    return text.strip()


def quiz_lines(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 2 and all(fields):
            yield fields


def quiz_problems(files: Mapping[str, str]) -> dict[Kind, list[Problem]]:
    """Problems from the quiz files: africa, america, asia, europe (country:capital), state
    (state:capital:...), elements (symbol:number:weight:name), babies (baby:adults), collectives
    (animals:group), posneg (word:opposite). A question with two different answers is left out."""
    found: dict[Kind, dict[str, Problem | None]] = {kind: {} for kind in QUIZ}

    def add(kind: Kind, key: str, fields: dict[str, str], answer: str) -> None:
        if key in SKIP or any(v in SKIP for v in fields.values()):
            return
        if key in found[kind]:  # asked twice: kept only if the answers agree
            old = found[kind][key]
            found[kind][key] = old if old and old.answer == answer else None
        else:
            found[kind][key] = Problem(key=key, fields=fields, answer=answer)

    for name in ("africa", "america", "asia", "europe", "state"):
        for f in quiz_lines(files[name]):
            place, capital = quiz_answer(f[0]), quiz_answer(f[1])
            add(CAPITAL, place, {"place": place}, f"The capital of {place} is {capital}.")
    for f in quiz_lines(files["elements"]):
        symbol, element = quiz_answer(f[0]), quiz_answer(f[3])
        add(
            ELEMENT,
            element.lower(),
            {"name": element.lower()},
            f"The chemical symbol for {element.lower()} is {symbol}.",
        )
    for f in quiz_lines(files["babies"]):
        baby = quiz_answer(f[0])
        for animal in f[1].split("|"):
            add(
                BABY,
                animal,
                {"animal": animal},
                f"A baby {animal} is called {'an' if baby[0] in 'aeiou' else 'a'} {baby}.",
            )
    for f in quiz_lines(files["collectives"]):
        for many in f[0].split("|"):
            many = quiz_answer(many)
            group = quiz_answer(f[1])
            add(
                GROUP,
                many,
                {"many": many},
                f"A group of {many} is called {'an' if group[0] in 'aeiou' else 'a'} {group}.",
            )
    for f in quiz_lines(files["posneg"]):
        a, b = quiz_answer(f[0]), quiz_answer(f[1])
        for word, other in ((a, b), (b, a)):
            if re.fullmatch(r"[a-z ]+", word + other):
                add(OPPOSITE, word, {"w": word}, f"The opposite of {word} is {other}.")
    return {kind: [p for p in v.values() if p] for kind, v in found.items()}


def first_sentences(text: str, max_words: int = 45) -> str:
    """The opening sentences of a summary, as many as fit in max_words (at least the first)."""
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(text.split()))
    out = sentences[0]
    for s in sentences[1:]:
        if len((out + " " + s).split()) > max_words:
            break
        out += " " + s
    return out


def wiki_problems(summaries: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """ "Tell me about X" answered by the opening of X's Wikipedia summary; "Who was X?" for people. X
    as the summary names it: "a warship" where it begins "A warship ...", "the Eiffel Tower" where
    it begins "The Eiffel Tower ..."."""
    out = []
    for key, s in sorted(summaries.items()):
        extract, title = s.get("extract") or "", s.get("title") or key
        if len(extract.split()) < 8 or "(" in title:
            continue
        named = re.match(rf"(An?|The) ({re.escape(title)}|{re.escape(title.lower())})\b", extract)
        name = f"{named[1].lower()} {named[2]}" if named else title
        what = "Who was" if s.get("topic") == "People" else "What is"
        out.append(Problem(key=title, fields={"title": name, "what": what}, answer=first_sentences(extract)))
    return out


# jokes whose tags are all in this list: no insults, sex, religion, politics or jokes about groups of people
JOKE_TAGS = {
    "life",
    "animal",
    "puns",
    "work",
    "kids",
    "money",
    "IT",
    "motivational",
    "Christmas",
    "sport",
    "food",
}
JOKE_TAGS |= {
    "intelligence",
    "time",
    "retirement",
    "family",
    "friendship",
    "communication",
    "Halloween",
    "school",
}
JOKE_TAGS |= {"science", "music", "technology", "travel", "attitude", "car", "computer", "health", "nature"}
JOKE_ASKS = [
    "Tell me a joke.",
    "Tell me a joke!",
    "tell me a joke",
    "Do you know any jokes?",
    "Can you tell me a joke?",
    "Make me laugh.",
    "Say something funny.",
    "I need a laugh. Got a joke?",
    "Tell me something funny.",
    "Know any good jokes?",
]


def joke_dialogues(jokes: Sequence[Mapping[str, Any]]) -> list[Messages]:
    """One dialogue per joke whose tags are all in JOKE_TAGS (and has at least one), asked one of JOKE_ASKS."""
    out = []
    for i, j in enumerate(jokes):
        tags = set(j.get("tags") or [])
        if tags and tags <= JOKE_TAGS and len(j["body"]) < 300:
            out.append(
                [
                    {"role": "user", "content": JOKE_ASKS[i % len(JOKE_ASKS)]},
                    {"role": "assistant", "content": j["body"].strip()},
                ]
            )
    return out
