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
import logging
import math
import random
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from model.tokenizer import Tokenizer, message_token_count, render_conversation

log = logging.getLogger(__name__)
Messages = list[dict[str, str]]
DOC_SEPARATOR = "\n\n\n"  # the corpus builder's separator between prose documents
ROLES = ("system", "user", "assistant")
VAL_FRACTION = 0.05


def holdout(items: Sequence[Any], key: str, fraction: float = VAL_FRACTION) -> tuple[list[Any], list[Any]]:
    """(train, val): whole conversations/documents, a seeded shuffle picks `fraction` for val (at
    least one when there are two or more). The same key always gives the same split."""
    order = list(range(len(items)))
    random.Random(key).shuffle(order)
    n_val = max(1, round(len(items) * fraction)) if len(items) > 1 else 0
    val = set(order[:n_val])
    return [x for i, x in enumerate(items) if i not in val], [x for i, x in enumerate(items) if i in val]


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
    """One `{"messages": [{"role", "content"}, ...]}` object per line; blank lines and empty
    conversations (`"messages": []`, what the app exports for a conversation never used) are
    skipped, the latter with a warning that counts them."""
    out = []
    empty = 0
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON object ({e.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError(
                        f'{path}:{n}: expected {{"messages": [...]}}, found a {type(record).__name__}'
                    )
                messages = record.get("messages")
                if messages == []:
                    empty += 1
                    continue
                out.append(check_messages(messages, f"{path}:{n}"))
    if empty:
        log.warning("%s: skipped %d empty conversation%s", path, empty, "" if empty == 1 else "s")
    return out


_TURN = re.compile(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|\Z)", re.DOTALL)
_SYSTEM = re.compile(r"^\s*<<SYS>>(.*?)<</SYS>>", re.DOTALL)
_CONVERSATION_BREAK = re.compile(r"\n\s*(?=<s>|\[INST\])")  # a new line that opens a new exchange


def parse_llama2(text: str) -> list[Messages]:
    """Llama-2 chat text -> conversations. TinyChat writes one conversation per line as
    `[INST] user [/INST] assistant [INST] user [/INST] assistant ...`; the `<s>[INST] u [/INST] a
    </s>` variant is read too. A line break followed by `[INST]` or `<s>` starts a new
    conversation (one inside an answer does not). A `<<SYS>> ... <</SYS>>` block becomes a
    system message. Conversations without an answer are dropped."""
    conversations: list[Messages] = []
    for chunk in _CONVERSATION_BREAK.split(text):
        current: Messages = []
        for m in _TURN.finditer(chunk.replace("<s>", "").replace("</s>", "")):
            user, assistant = m.group(1), m.group(2).strip()
            system = _SYSTEM.match(user)
            if system:
                if not current:
                    current.append({"role": "system", "content": system.group(1).strip()})
                user = user[system.end() :]
            current.append({"role": "user", "content": user.strip()})
            if assistant:
                current.append({"role": "assistant", "content": assistant})
        if any(m["role"] == "assistant" for m in current):
            conversations.append(current)
    return conversations


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


EXPECTED = {
    "jsonl": 'one {"messages": [{"role": "user"|"assistant"|"system", "content": "..."}]} object per line',
    "txt": "TinyChat's Llama-2 turns, one conversation per line: [INST] user [/INST] assistant [INST] ...",
    "tar": 'JSON shards (*.json, *.jsonl) of [{"chat": "[INST] user [/INST] assistant ..."}], as TinyChat ships them',
}


def read_conversations(path: str | Path) -> list[Messages]:
    """Any supported conversation file, by its name: .jsonl, .txt (TinyChat) or .tar.gz (TinyChat).
    A file that yields no conversation is an error that says what was expected."""
    name = Path(path).name
    if name.endswith(".jsonl"):
        kind, convs = "jsonl", read_jsonl(path)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        kind, convs = "tar", read_tinychat_tar(path)
    elif name.endswith(".txt"):
        kind, convs = "txt", read_tinychat_txt(path)
    else:
        raise ValueError(f"{path}: unknown format (expected .jsonl, TinyChat .txt or .tar.gz)")
    if not convs:
        raise ValueError(f"{path}: no conversation with an answer found; expected {EXPECTED[kind]}")
    return convs


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
        n = message_token_count(tok, m)
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


def cap_prose(
    sources: Mapping[str, Sequence[Messages] | Sequence[str]], share: float, seed: int
) -> dict[str, list]:
    """The sources with prose documents (a seeded sample of them, the same share of each prose
    source) cut to at most `share` of the text, measured in characters; dialogue stays whole."""

    def chars(items: Sequence[Any]) -> int:
        return sum(len(x) if isinstance(x, str) else sum(len(m["content"]) for m in x) for x in items)

    prose = {k: list(v) for k, v in sources.items() if v and isinstance(v[0], str)}
    dialogue = {k: list(v) for k, v in sources.items() if k not in prose}
    prose_chars = sum(chars(v) for v in prose.values())
    budget = share / (1 - share) * sum(chars(v) for v in dialogue.values()) if share < 1 else math.inf
    if prose_chars <= budget:
        return {**dialogue, **prose}
    keep = budget / prose_chars
    out: dict[str, list] = dict(dialogue)
    for name, docs in prose.items():
        rng = random.Random(f"{seed}:{name}")
        order = rng.sample(docs, len(docs))
        limit, taken, total = keep * chars(docs), [], 0
        for d in order:
            if total + len(d) > limit:
                continue
            taken.append(d)
            total += len(d)
        if taken:
            out[name] = taken
    return out


def sft_batch_index(n_rows: int, batch_size: int, j: int, seed: int) -> torch.Tensor:
    """Row indices of global micro-batch j: the rows in one seeded permutation per epoch, each
    batch_size-sized slice in turn. Rank r of a world of W takes batches j = i * W + r, so ranks
    read disjoint rows, and batch j is the same whether or not the run was resumed on the way."""
    per_epoch = max(n_rows // batch_size, 1)
    epoch, slot = divmod(j, per_epoch)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    idx = order[slot * batch_size : (slot + 1) * batch_size]
    return idx if len(idx) == batch_size else order[torch.arange(batch_size) % n_rows]


class MicroBatch(NamedTuple):
    """x, y (B, T), the loss mask of y (None: every token counts) and, for SFT, the train rows drawn
    (their indices: per-row flags such as --keep's are read at them, never drawn a second time)."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None
    rows: torch.Tensor | None

    def to(self, device: torch.device) -> MicroBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return MicroBatch(self.x.to(device), self.y.to(device), move(self.mask), move(self.rows))


def micro_batch(
    stage: str,
    ids: torch.Tensor,
    mask: torch.Tensor,
    shape: tuple[int, int],
    i: int,
    rank: int,
    world: int,
    seed: int,
) -> MicroBatch:
    """Micro-batch i of rank `rank`: a pure function of its arguments, so every rank draws its own data
    and a resumed run draws what the uninterrupted one would. shape: (batch size, block size).
    Pretraining: random windows of the stream (ids 1-D); SFT: rows (ids 2-D), disjoint per rank."""
    if stage == "pretrain":
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i * world + rank)
        x, y, _ = stream_batch(ids, mask, shape[0], shape[1], gen)
        return MicroBatch(x, y, None, None)
    idx = sft_batch_index(len(ids), shape[0], i * world + rank, seed)
    return MicroBatch(*row_batch(ids, mask, idx), idx)
