"""Helpers the model tests share (imported, never fixtures of one test file used by another)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from model.tokenizer import Tokenizer

TINY_VOCAB = 320
_WORDS = (
    "the a cat dog bird sat ran flew on under over mat tree sky happy sad big small red blue green "
    "hello hi thanks please yes no what why how is are was you I we they it "
    "café naïve crème brûlée über façade 猫 犬 日本語 中文 你好 🙂 🚀 🎉 👍🏽"
)
WORDS = _WORDS.split()


def make_texts(n: int = 400, seed: int = 0) -> list[str]:
    """n short lines of mixed English, accented Latin, CJK and emoji."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        lines.append(" ".join(words) + rng.choice([".", "!", "?", ""]))
    return lines


TINY = ["--n-layer", "2", "--n-head", "4", "--n-embd", "32", "--block-size", "48"]


def make_corpus(tmp_path: Path) -> Path:
    """A corpus folder in the builder's layout (train/val, dialogue JSONL and prose text) with a
    tiny tokenizer trained on it."""
    texts = make_texts()
    data = tmp_path / "data"
    for split, lines in (("train", texts[:300]), ("val", texts[300:])):
        (data / split).mkdir(parents=True)
        (data / split / "prose.txt").write_text(
            "\n\n\n".join(" ".join(lines[i : i + 5]) for i in range(0, len(lines), 5))
        )
        chats = [
            {"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
            for a, b in zip(lines[::2], lines[1::2], strict=False)
        ]
        (data / split / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    Tokenizer.train(texts, vocab_size=TINY_VOCAB, show_progress=False).save(data / "tokenizer.json")
    return data
