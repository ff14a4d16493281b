"""Questions about words that WordNet answers, each kind asked in many phrasings (phrasing.py):
meanings, "What is a dog?" (its kind and gloss), synonyms, opposites both ways, and either-or
questions ("Is a dog an animal or a plant?") from the hypernyms. Also the word list that the
spelling and letter-count skills use: common WordNet lemmas, their irregular forms and the
everyday words of the chat corpora.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from model.corpus.phrasing import Kind, Problem, family
from model.corpus.sources import article, parse_wordnet_data, parse_wordnet_pointers

POS_CHAR = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
Synset = tuple[str, list[str], str, list[str]]  # offset, words, definition, examples

MEANING = Kind(
    name="meaning",
    computed=False,
    word_fields=("w",),
    families=(
        family("what_mean", "What does {w} mean?", "What does the word {w} mean?", "what does {w} mean"),
        family("meaning_of", "What is the meaning of {w}?", "What's the meaning of the word {w}?"),
        family("define", "Define {w}.", "define {w}", "Can you define {w}?"),
        family("tell_me", "Tell me what {w} means.", "Tell me the meaning of {w}."),
        family("definition", "What's the definition of {w}?", "What is the definition of the word {w}?"),
        family("word_first", "{w}: what does it mean?", "The word {w} - what does it mean?"),
        family("explain", "Explain the word {w}.", "Give me the definition of {w}.", held_out=True),
    ),
)
WHAT_IS = Kind(
    name="what_is",
    computed=False,
    families=(
        family("what_is", "What is {t}?", "What's {t}?", "what is {t}"),
        family("tell_me", "Tell me what {t} is.", "Tell me about {t}."),
        family("can_you", "Can you tell me what {t} is?", "Do you know what {t} is?"),
        family("kind", "What kind of thing is {t}?", "What sort of thing is {t}?"),
        family("explain", "Explain what {t} is.", "I don't know what {t} is. Can you explain?"),
        family("describe", "Describe {t}.", "What exactly is {t}?", held_out=True),
    ),
)
SYNONYM = Kind(
    name="synonym",
    computed=False,
    word_fields=("w",),
    families=(
        family(
            "another_word",
            "What is another word for {w}?",
            "What's another word for {w}?",
            "another word for {w}",
        ),
        family("synonym", "Give me a synonym for {w}.", "What is a synonym of {w}?", "synonym for {w}"),
        family("tell_me", "Tell me another word for {w}.", "Tell me a synonym for {w}."),
        family("can_you", "Can you give me another word for {w}?", "Do you know a synonym for {w}?"),
        family(
            "same_as",
            "What word means the same as {w}?",
            "Which word means the same thing as {w}?",
            held_out=True,
        ),
    ),
)
ANTONYM_FAMILIES = (
    family("opposite", "What is the opposite of {w}?", "What's the opposite of {w}?", "opposite of {w}"),
    family("antonym", "What is an antonym of {w}?", "Give me an antonym for {w}.", "antonym of {w}"),
    family("tell_me", "Tell me the opposite of {w}.", "Tell me an antonym of {w}."),
    family("can_you", "Can you tell me the opposite of {w}?", "Do you know the opposite of {w}?"),
    family("word_first", "{w}: what is the opposite?", "The opposite of {w} is what?"),
    family("which_word", "Which word is the opposite of {w}?", "Name the opposite of {w}.", held_out=True),
)
ANTONYM = Kind(name="antonym", computed=False, word_fields=("w",), families=ANTONYM_FAMILIES)
EITHER_OR = Kind(
    name="either_or",
    computed=False,
    families=(
        family("is_it", "Is {t} {x} or {y}?", "is {t} {x} or {y}"),
        family("would_you", "Would you say {t} is {x} or {y}?", "Do you think {t} is {x} or {y}?"),
        family("tell_me", "Tell me if {t} is {x} or {y}.", "Tell me whether {t} is {x} or {y}."),
        family("can_you", "Can you tell me whether {t} is {x} or {y}?", "Do you know if {t} is {x} or {y}?"),
        family("which", "Which is {t}, {x} or {y}?", "What is {t}: {x} or {y}?"),
        family("or_is_it", "Is {t} {x}, or is it {y}?", "{x} or {y}: which is {t}?", held_out=True),
    ),
)
LEXICON = (MEANING, WHAT_IS, SYNONYM, ANTONYM, EITHER_OR)

# either-or categories, most specific first: (the name with its article, WordNet 3.0 noun synsets)
CATEGORIES = [
    ("a bird", {"01503061"}),
    ("a fish", {"02512053"}),
    ("an insect", {"02159955"}),
    ("an animal", {"00015388"}),
    ("a fruit", {"07705931"}),
    ("a vegetable", {"07707451"}),
    ("a drink", {"07881800"}),
    ("a food", {"00021265", "07555863"}),
    ("a tree", {"13104059"}),
    ("a flower", {"11669335", "11669921"}),
    ("a plant", {"00017222"}),
    ("a person", {"00007846"}),
    ("a body part", {"05220461"}),
    ("a musical instrument", {"03800933"}),
    ("a vehicle", {"04524313"}),
    ("a building", {"02913152"}),
    ("a piece of furniture", {"03405725"}),
    ("a piece of clothing", {"03051540"}),
    ("a tool", {"04451818"}),
    ("a color", {"04959672"}),
    ("a feeling", {"00026192"}),
    ("a place", {"00027167"}),
]
# ancestors too vague to say what a thing is
ABSTRACT = {
    "entity",
    "physical entity",
    "abstraction",
    "object",
    "whole",
    "thing",
    "matter",
    "group",
    "relation",
}
ABSTRACT |= {"attribute", "act", "event", "psychological feature", "measure", "state", "artifact", "unit"}
ABSTRACT |= {
    "organism",
    "living thing",
    "causal agent",
    "physical object",
    "part",
    "portion",
    "instrumentality",
}


@dataclass
class WordNet:
    """The parsed database: synsets and pointer lines by part of speech, every sense of each lemma
    (most frequent first, with the count of its tagged senses) and each lemma's tagged frequency."""

    synsets: dict[str, dict[str, Synset]] = field(default_factory=dict)
    lines: dict[str, dict[str, str]] = field(default_factory=dict)
    senses: dict[str, dict[str, tuple[int, list[str]]]] = field(default_factory=dict)
    frequency: Counter = field(default_factory=Counter)  # lemma -> tagged occurrences
    sense_frequency: Counter = field(default_factory=Counter)  # (lemma, pos, sense number from 1) -> tagged
    irregular: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, files: Mapping[str, bytes]) -> WordNet:
        wn = cls()
        for pos, c in POS_CHAR.items():
            wn.synsets[c], wn.lines[c] = {}, {}
            for line in files[f"data.{pos}"].decode().splitlines():
                parsed = parse_wordnet_data(line)
                if parsed:
                    wn.synsets[c][parsed[0]] = parsed
                    wn.lines[c][parsed[0]] = line
            wn.senses[c] = parse_index_senses(files[f"index.{pos}"].decode().splitlines())
            wn.irregular |= {
                line.split()[0] for line in files[f"{pos}.exc"].decode().splitlines() if line.strip()
            }
        for line in files["cntlist.rev"].decode().splitlines():
            f = line.split()
            if len(f) == 3:
                lemma, sense_type = f[0].split("%")[0].replace("_", " "), f[0].split("%")[1][0]
                wn.frequency[lemma] += int(f[2])
                wn.sense_frequency[lemma, "nvar"["12345".index(sense_type) % 4], int(f[1])] += int(f[2])
        return wn

    def pointers(self, c: str, offset: str) -> list[tuple[str, str, str, int, int]]:
        return parse_wordnet_pointers(self.lines[c][offset])

    def hypernyms(self, offset: str) -> list[str]:
        return [o for s, o, p, _, _ in self.pointers("n", offset) if s in ("@", "@i") and p == "n"]

    def ancestors(self, offset: str, depth: int = 12) -> list[tuple[int, str]]:
        """(distance, offset) of every noun ancestor up to `depth` steps, nearest first."""
        out, frontier, seen = [], [offset], {offset}
        for d in range(1, depth + 1):
            frontier = [h for o in frontier for h in self.hypernyms(o) if h not in seen]
            seen |= set(frontier)
            out += [(d, o) for o in frontier]
        return out

    def pos_counts(self, lemma: str) -> list[tuple[tuple[str, str, int], int]]:
        return [(k, n) for k in self.sense_keys(lemma) if (n := self.sense_frequency[k])]

    def sense_keys(self, lemma: str) -> list[tuple[str, str, int]]:
        return [(lemma, c, i + 1) for c in "nvar" for i in range(len(self.senses[c].get(lemma, (0, []))[1]))]

    def head(self, c: str, offset: str) -> str:
        return self.synsets[c][offset][1][0].lower()


def parse_index_senses(lines: Iterable[str]) -> dict[str, tuple[int, list[str]]]:
    """index.<pos> lines -> {lemma: (tagged sense count, offsets of every sense, most frequent first)}."""
    out = {}
    for line in lines:
        if line.startswith(" ") or not line.strip():
            continue  # the licence header is indented
        f = line.split()
        p_cnt = int(f[3])
        synset_cnt = int(f[2])
        out[f[0].replace("_", " ")] = (int(f[5 + p_cnt]), f[6 + p_cnt : 6 + p_cnt + synset_cnt])
    return out


def common_lemmas(wn: WordNet) -> dict[str, list[tuple[str, str]]]:
    """Single lower-case words of 2-12 letters with a tagged sense: {lemma: [(pos, first sense)]},
    the part of speech most often tagged first ("down" is more often an adverb than feathers)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for c, index in wn.senses.items():
        for lemma, (tagged, offsets) in index.items():
            if tagged > 0 and re.fullmatch(r"[a-z]{2,12}", lemma) and wn.synsets[c][offsets[0]][2]:
                out.setdefault(lemma, []).append((c, offsets[0]))
    for lemma, senses in out.items():
        senses.sort(key=lambda s: -sum(n for (w, c, _), n in wn.pos_counts(lemma) if c == s[0]))
    return out


def word_list(wn: WordNet, chat: Chat, min_count: int = 5) -> list[str]:
    """The words the spelling skills teach: common WordNet lemmas, their irregular forms, and every
    word of 1-12 letters said at least min_count times in the chat corpora that is a WordNet
    lemma, an inflection of one (-s, -es, -ed, -ing, -er, -est, -ly) or frequent enough to be no typo."""
    lemmas = {w for c in wn.senses.values() for w in c}
    words = set(common_lemmas(wn)) | {w for w in wn.irregular if re.fullmatch(r"[a-z]{2,12}", w)}
    for w, n in chat.words.items():
        if n < min_count or not re.fullmatch(r"[a-z]{1,12}", w):
            continue
        stems = {
            w[: -len(s)] + e
            for s in ("s", "es", "ed", "ing", "er", "est", "ly", "d")
            for e in ("", "e")
            if w.endswith(s)
        }
        if w in lemmas or stems & lemmas or n >= 20 * min_count:
            words.add(w)
    return sorted(words)


def kind_of(wn: WordNet, offset: str) -> str | None:
    """What a noun sense is a kind of: the most frequent head word among its ancestors up to 4 steps
    (WordNet's direct hypernym is often a word nobody says: a dog is a "canine"), vague ones aside."""
    best = None
    for d, o in wn.ancestors(offset, 4):
        word = wn.head("n", o)
        if word in ABSTRACT or not re.fullmatch(r"[a-z ]+", word):
            continue
        score = wn.frequency[word] / d
        if best is None or score > best[0]:
            best = (score, word)
    return best[1] if best else None


def category(wn: WordNet, offsets: list[str]) -> tuple[str, set[str]] | None:
    """(the most specific either-or category, every category) of a noun's senses: its two most
    frequent, since the first is often not the thing itself (a "chicken" is first its meat)."""
    above = {o for offset in offsets[:2] for _, o in wn.ancestors(offset)}
    mine = [name for name, synsets in CATEGORIES if synsets & above]
    return (mine[0], set(mine)) if mine else None


def thing(lemma: str, definition: str, chat: Chat) -> str:
    """The noun as a question names it: "a dog", but "water" (a mass noun). Countable where the chat
    corpora put "a"/"an" before it or use its plural at least once in 20 uses of the word, or where
    its gloss begins with "a"/"an"."""
    countable = (chat.articles[lemma] + chat.words[lemma + "s"] + chat.words[lemma + "es"]) * 20
    if countable >= max(chat.words[lemma], 1) or re.match(r"(a|an) ", definition):
        return article(lemma)
    return lemma


def meaning_answer(word: str, definition: str, examples: list[str]) -> str:
    text = f"The word {word} means {definition.rstrip('.')}."
    if examples:
        text += f' For example: "{examples[0]}".'
    return text


def opposites(wn: WordNet, lemmas: Mapping[str, list[tuple[str, str]]]) -> dict[str, str]:
    """{word: its opposite}, both ways: WordNet's antonym pointers from the first of a lemma's four
    most frequent senses that has one (adjectives first, then nouns, adverbs, verbs; only a part of
    speech with at least a quarter of the lemma's tagged uses), also through a
    word of the same synset ("big" is "large", whose opposite is "small")."""
    out: dict[str, str] = {}
    for c in ("a", "n", "r", "v"):
        for lemma, senses in lemmas.items():
            counts = {p: sum(n for (_, q, _), n in wn.pos_counts(lemma) if q == p) for p, _ in senses}
            if lemma in out or c not in counts or counts[c] * 4 < max(counts.values()):
                continue  # not in a part of speech it is often used in: "fire" is no verb to "hire"
            for i, offset in enumerate(wn.senses[c][lemma][1][:4]):
                if not wn.sense_frequency[lemma, c, i + 1]:
                    continue  # a sense nobody uses: "red" as a loss, whose opposite is "gain"
                words = [w.lower() for w in wn.synsets[c][offset][1]]
                mine = words.index(lemma) + 1 if lemma in words else 0
                found = [
                    wn.synsets[p][o][1][t - 1].lower()
                    for s, o, p, src, t in wn.pointers(c, offset)
                    if s == "!" and t and o in wn.synsets.get(p, {})
                ]
                direct = [
                    wn.synsets[p][o][1][t - 1].lower()
                    for s, o, p, src, t in wn.pointers(c, offset)
                    if s == "!" and src == mine and t and o in wn.synsets.get(p, {})
                ]
                pick = next((w for w in direct + found if re.fullmatch(r"[a-z]+", w) and w != lemma), None)
                if pick:
                    out[lemma] = pick
                    out.setdefault(pick, lemma)
                    break
    return out


@dataclass
class Chat:
    """Word counts of the chat corpora: every word, and how often "a"/"an" comes right before it."""

    words: Counter = field(default_factory=Counter)
    articles: Counter = field(default_factory=Counter)

    @classmethod
    def count(cls, texts: Iterable[str]) -> Chat:
        out = cls()
        for text in texts:
            words = re.findall(r"[a-z]+", text.lower())
            out.words.update(words)
            out.articles.update(b for a, b in zip(words, words[1:], strict=False) if a in ("a", "an"))
        return out


def problems(wn: WordNet, chat: Chat) -> dict[Kind, list[Problem]]:
    """Every lexicon problem of the common lemmas (most frequent sense of each)."""
    lemmas = common_lemmas(wn)
    out: dict[Kind, list[Problem]] = {kind: [] for kind in LEXICON}
    for lemma, senses in sorted(lemmas.items()):
        c, offset = senses[0]
        _, words, definition, examples = wn.synsets[c][offset]
        out[MEANING].append(
            Problem(key=lemma, fields={"w": lemma}, answer=meaning_answer(lemma, definition, examples))
        )
        same = [
            w
            for w in words
            if w != lemma and re.fullmatch(r"[a-z]+", w) and (wn.frequency[w] or chat.words[w] >= 5)
        ]
        same = same[:2]
        if same:
            answer = f"Another word for {lemma} is " + " or ".join(same) + "."
            out[SYNONYM].append(Problem(key=lemma, fields={"w": lemma}, answer=answer))
        if c != "n":
            continue  # "What is a good?": only words most often used as nouns
        noun = offset
        definition = wn.synsets["n"][noun][2]
        t = thing(lemma, definition, chat)
        kind = kind_of(wn, noun)
        if kind and kind != lemma:
            answer = f"{t[0].upper() + t[1:]} is a kind of {kind}: {definition.rstrip('.')}."
            out[WHAT_IS].append(Problem(key=lemma, fields={"t": t}, answer=answer))
        found = category(wn, wn.senses["n"][lemma][1])
        if found:
            mine, all_mine = found
            others = [name for name, _ in CATEGORIES if name not in all_mine]
            other = others[sum(map(ord, lemma)) % len(others)]  # a fixed pick, no generator needed
            x, y = (mine, other) if len(lemma) % 2 else (other, mine)
            answer = f"{t[0].upper() + t[1:]} is {mine}, not {other}."
            out[EITHER_OR].append(Problem(key=lemma, fields={"t": t, "x": x, "y": y}, answer=answer))
    for word, opposite in sorted(opposites(wn, lemmas).items()):
        answer = f"The opposite of {word} is {opposite}."
        out[ANTONYM].append(Problem(key=word, fields={"w": word}, answer=answer))
    return out
