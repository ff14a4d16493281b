"""Data: conversations and prose in, (x, y, loss-mask) batches out.

Loaders return conversations as lists of `{"role", "content"}` messages:
  - read_jsonl: the generic `{"messages": [...]}` JSONL (what the app's export writes)
  - read_tinychat_txt / read_tinychat_tar: TinyChat as its users have it, `tinychat.txt` or the
    JSON shards inside `TinyChat_all_data.tar.gz` (read straight from the tar), both in Llama-2
    `<s>[INST] user [/INST] assistant </s>` turns
  - load_corpus: the default corpus that `python -m model.corpus` writes into data/

Batching: pretraining reads random windows of one packed token stream (loss everywhere);
SFT packs whole rendered conversations into rows, loss on assistant tokens only.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from model.tokenizer import Tokenizer, render_conversation

Messages = list[dict[str, str]]
DOC_SEPARATOR = "\n\n\n"  # the corpus builder's separator between prose documents
ROLES = ("system", "user", "assistant")

# ---------------------------------------------------------------- loaders


def check_messages(messages: Any, where: str) -> Messages:
    """The messages of one conversation, validated: roles known, contents strings, not empty."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(
                f"{where}: message {i} must be {{'role': user|assistant|system, 'content': str}}"
            )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_jsonl(path: str | Path) -> list[Messages]:
    """One `{"messages": [{"role", "content"}, ...]}` object per line; blank lines are skipped."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                out.append(check_messages(json.loads(line).get("messages"), f"{path}:{n}"))
    return out


_EXCHANGE = re.compile(r"<s>\s*\[INST\](.*?)\[/INST\](.*?)(?:</s>|(?=<s>)|\Z)", re.DOTALL)
_SYSTEM = re.compile(r"^\s*<<SYS>>(.*?)<</SYS>>", re.DOTALL)


def parse_llama2(text: str) -> list[Messages]:
    """Llama-2 chat text -> conversations. Each `<s>[INST] u [/INST] a </s>` is one exchange;
    exchanges follow each other within a conversation, and a line break between two of them
    starts a new conversation. A `<<SYS>> ... <</SYS>>` block becomes a system message."""
    conversations: list[Messages] = []
    current: Messages = []
    end = 0
    for m in _EXCHANGE.finditer(text):
        if current and "\n" in text[end : m.start()]:
            conversations.append(current)
            current = []
        end = m.end()
        user, assistant = m.group(1), m.group(2).strip()
        system = _SYSTEM.match(user)
        if system:
            if not current:
                current.append({"role": "system", "content": system.group(1).strip()})
            user = user[system.end() :]
        current.append({"role": "user", "content": user.strip()})
        if assistant:
            current.append({"role": "assistant", "content": assistant})
    if current:
        conversations.append(current)
    return [c for c in conversations if any(m["role"] == "assistant" for m in c)]


def read_tinychat_txt(path: str | Path) -> list[Messages]:
    """tinychat.txt: Llama-2 formatted conversations, one after another."""
    return parse_llama2(Path(path).read_text(encoding="utf-8"))


def _shard_texts(data: Any) -> Iterator[str]:
    """The Llama-2 strings in a JSON shard: a string, or a list/dict holding strings (any nesting,
    e.g. `[{"text": "<s>[INST] ..."}]`)."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, list):
        for item in data:
            yield from _shard_texts(item)
    elif isinstance(data, dict):
        for value in data.values():
            yield from _shard_texts(value)


def read_tinychat_tar(path: str | Path) -> list[Messages]:
    """The JSON shards (`*.json`, or JSON Lines) inside TinyChat_all_data.tar.gz, in name order."""
    out = []
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile() or not member.name.endswith((".json", ".jsonl")):
                continue
            raw = tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
            try:
                docs = [json.loads(raw)]
            except json.JSONDecodeError:  # JSON Lines
                docs = [json.loads(line) for line in raw.splitlines() if line.strip()]
            for text in _shard_texts(docs):
                out.extend(parse_llama2(text))
    return out


def read_conversations(path: str | Path) -> list[Messages]:
    """Any supported conversation file, by its name: .jsonl, .txt (TinyChat) or .tar.gz (TinyChat)."""
    name = Path(path).name
    if name.endswith(".jsonl"):
        return read_jsonl(path)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return read_tinychat_tar(path)
    if name.endswith(".txt"):
        return read_tinychat_txt(path)
    raise ValueError(f"{path}: unknown format (expected .jsonl, TinyChat .txt or .tar.gz)")


def read_prose(path: str | Path) -> list[str]:
    """A corpus prose file: documents separated by two blank lines."""
    docs = Path(path).read_text(encoding="utf-8").split(DOC_SEPARATOR)
    return [d.strip() for d in docs if d.strip()]


def load_corpus(data_dir: str | Path, split: str) -> dict[str, list[Messages] | list[str]]:
    """The default corpus's `split` ("train" or "val"): {source: conversations or documents}."""
    folder = Path(data_dir) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no {split} split at {folder}: build the corpus with `make corpus`")
    out: dict[str, list[Messages] | list[str]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".jsonl":
            out[path.stem] = read_jsonl(path)
        elif path.suffix == ".txt":
            out[path.stem] = read_prose(path)
    return out


def corpus_texts(sources: Mapping[str, Sequence[Messages] | Sequence[str]]) -> Iterator[str]:
    """Every document and message content, for training a tokenizer."""
    for items in sources.values():
        for item in items:
            if isinstance(item, str):
                yield item
            else:
                yield from (m["content"] for m in item)


# ---------------------------------------------------------------- batching


def encode_item(tok: Tokenizer, item: Messages | str) -> tuple[list[int], list[int]]:
    """(ids, mask) of a conversation (rendered, mask on assistant tokens) or a document (+ <|eos|>,
    mask everywhere)."""
    if isinstance(item, str):
        ids = tok.encode(item) + [tok.eos_id]
        return ids, [1] * len(ids)
    return render_conversation(tok, item)


def split_long(tok: Tokenizer, messages: Messages, max_len: int) -> list[Messages]:
    """A conversation cut at user turns into pieces that each render in max_len tokens where
    possible (a single over-long exchange stays whole and is truncated when packed)."""
    pieces: list[Messages] = []
    current: Messages = []
    length = 0
    for m in messages:
        n = (
            len(render_conversation(tok, [m])[0])
            if m["role"] != "system"
            else len(tok.encode(m["content"])) + 3
        )
        if m["role"] == "user" and current and length + n > max_len and current[-1]["role"] == "assistant":
            pieces.append(current)
            current, length = [], 0
        current.append(m)
        length += n
    if current and any(m["role"] == "assistant" for m in current):
        pieces.append(current)
    return pieces


def pack_stream(tok: Tokenizer, items: Iterable[Messages | str]) -> tuple[torch.Tensor, torch.Tensor]:
    """All items, encoded and concatenated: (ids, mask) as 1-D tensors (uint16-sized ids as int32)."""
    ids: list[int] = []
    mask: list[int] = []
    for item in items:
        i, m = encode_item(tok, item)
        ids += i
        mask += m
    return torch.tensor(ids, dtype=torch.int32), torch.tensor(mask, dtype=torch.uint8)


def stream_batch(
    ids: torch.Tensor, mask: torch.Tensor, batch_size: int, block_size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random windows of a packed stream: x, y (B, T) int64 and the loss mask of y (B, T)."""
    if len(ids) < block_size + 1:
        raise ValueError(
            f"the token stream ({len(ids)} tokens) is shorter than one window ({block_size + 1})"
        )
    starts = torch.randint(0, len(ids) - block_size, (batch_size,), generator=gen).tolist()
    rows = torch.stack([ids[s : s + block_size + 1] for s in starts]).long()
    masks = torch.stack([mask[s + 1 : s + block_size + 1] for s in starts])
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), masks


def sft_rows(
    tok: Tokenizer, conversations: Sequence[Messages], block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole conversations packed greedily, in the given order, into rows of block_size + 1 tokens
    (padding at the end of a row, masked out); conversations longer than a row are split at user
    turns first, and a piece still too long is truncated. Returns ids and masks, (N, block_size + 1)."""
    width = block_size + 1
    rows: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    mask: list[int] = []
    for conv in conversations:
        for piece in split_long(tok, conv, width):
            i, m = render_conversation(tok, piece)
            i, m = i[:width], m[:width]
            if len(ids) + len(i) > width:
                rows.append((ids, mask))
                ids, mask = [], []
            ids += i
            mask += m
    if ids:
        rows.append((ids, mask))
    pad = tok.pad_id
    out_ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in rows], dtype=torch.int32)
    out_mask = torch.tensor([m + [0] * (width - len(m)) for _, m in rows], dtype=torch.uint8)
    return out_ids, out_mask


def row_batch(
    ids: torch.Tensor, mask: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The SFT rows at index: x, y (B, T) int64 and the loss mask of y (B, T)."""
    rows = ids[index].long()
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), mask[index][:, 1:].contiguous()
