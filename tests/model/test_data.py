"""The data loaders on small fixtures written in each format, and the batching."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from model.data import (
    cap_prose,
    load_corpus,
    micro_batch,
    pack_stream,
    parse_llama2,
    read_conversations,
    read_jsonl,
    read_tinychat_tar,
    read_tinychat_txt,
    row_batch,
    sft_rows,
    split_long,
    stream_batch,
)
from model.tokenizer import Tokenizer, render_conversation

TINYCHAT = (
    "<s>[INST] Hi there! [/INST] Hello! How can I help? </s>"
    "<s>[INST] What is a cat? [/INST] A small furry animal.\nIt purrs. </s>\n"
    "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nName a colour. [/INST] Blue. </s>\n"
    "<s>[INST] An unanswered question [/INST]</s>\n"
)


def test_parse_tinychat_txt_splits_conversations_and_turns(tmp_path: Path):
    path = tmp_path / "tinychat.txt"
    path.write_text(TINYCHAT)
    convs = read_tinychat_txt(path)
    assert convs == [
        [
            {"role": "user", "content": "Hi there!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What is a cat?"},
            {"role": "assistant", "content": "A small furry animal.\nIt purrs."},
        ],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ],
    ]  # the conversation without an answer is dropped


def test_read_tinychat_tar_reads_json_and_jsonl_shards(tmp_path: Path):
    path = tmp_path / "TinyChat_all_data.tar.gz"
    shards = {
        "TinyChat/shard_00.json": json.dumps([{"text": "<s>[INST] Hi [/INST] Hello there. </s>"}]),
        "TinyChat/shard_01.json": json.dumps(
            ["<s>[INST] 2+2? [/INST] 4. </s><s>[INST] And 3+3? [/INST] 6. </s>"]
        ),
        "TinyChat/shard_02.jsonl": json.dumps({"text": "<s>[INST] Bye [/INST] Goodbye! </s>"}) + "\n",
        "TinyChat/README.md": "not a shard",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in shards.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    convs = read_tinychat_tar(path)
    assert [len(c) for c in convs] == [2, 4, 2]
    assert convs[1][3] == {"role": "assistant", "content": "6."}
    assert convs[2][1]["content"] == "Goodbye!"
    assert read_conversations(path) == convs


def test_parse_llama2_keeps_one_line_conversation_together():
    convs = parse_llama2("<s>[INST] a [/INST] b </s><s>[INST] c [/INST] d </s>")
    assert [m["content"] for m in convs[0]] == ["a", "b", "c", "d"]


def test_read_jsonl_validates_messages(tmp_path: Path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    assert read_jsonl(path) == [good["messages"], good["messages"]]
    path.write_text(json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n")
    with pytest.raises(ValueError, match="chats.jsonl:1"):
        read_jsonl(path)


def test_load_corpus_reads_dialogues_and_prose(tmp_path: Path):
    (tmp_path / "val").mkdir()
    conv = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    (tmp_path / "val" / "chat.jsonl").write_text(json.dumps(conv) + "\n")
    (tmp_path / "val" / "book.txt").write_text("First doc.\n\nIts second paragraph.\n\n\nSecond doc.\n")
    corpus = load_corpus(tmp_path, "val")
    assert corpus == {
        "book": ["First doc.\n\nIts second paragraph.", "Second doc."],
        "chat": [conv["messages"]],
    }
    with pytest.raises(FileNotFoundError, match="make corpus"):
        load_corpus(tmp_path, "train")


def _conv(n: int) -> list[dict[str, str]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"the cat sat on the mat {i}"}
        for i in range(2 * n)
    ]


def test_sft_rows_mask_only_assistant_tokens(tokenizer: Tokenizer):
    convs = [_conv(1) for _ in range(6)]
    ids, mask = sft_rows(tokenizer, convs, block_size=47)
    assert ids.shape == mask.shape and ids.shape[0] > 1 and ids.shape[1] == 48
    x, y, m = row_batch(ids, mask, torch.arange(len(ids)))
    assert torch.equal(x[:, 1:], y[:, :-1])
    # the loss covers exactly the assistant tokens and their <|eos|>: never user text or padding
    rendered = [render_conversation(tokenizer, c) for c in convs]
    assert int(m.sum()) == sum(sum(r_mask) for _, r_mask in rendered)
    targets = y[m.bool()]
    assert int((targets == tokenizer.eos_id).sum()) == len(convs)
    assert not torch.isin(
        targets, torch.tensor([tokenizer.pad_id, tokenizer.user_id, tokenizer.assistant_id])
    ).any()


def test_split_long_cuts_at_user_turns(tokenizer: Tokenizer):
    conv = _conv(8)
    pieces = split_long(tokenizer, conv, 40)
    assert len(pieces) > 1
    assert [m for p in pieces for m in p] == conv
    assert all(p[0]["role"] == "user" and p[-1]["role"] == "assistant" for p in pieces)


def test_stream_batch_windows_are_shifted_by_one(tokenizer: Tokenizer, texts: list[str]):
    ids, mask = pack_stream(tokenizer, texts[:50] + [_conv(1)])
    assert ids.dtype == torch.int32 and len(ids) == len(mask)
    x, y, m = stream_batch(ids, mask, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == m.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="shorter than one window"):
        stream_batch(ids[:10], mask[:10], 1, 16, torch.Generator())


# Written the way TinyChat's own scripts write them: the generator appends each model answer (one
# paragraph of "[INST] user [/INST] assistant" turns, as its prompt asks) plus "\n" to tinychat.txt,
# and jsongen.py dumps lines as [{"chat": line.strip()}, ...] with indent=4 into data<i>.json.
TINYCHAT_REAL = [
    "[INST] Good morning, the garden looks lovely after the rain, don't you think so? [/INST] "
    "It really does, the flowers seem brighter and the grass smells fresh today. [INST] I might "
    "plant some tomatoes later this afternoon. [/INST] That sounds like a wonderful plan for a "
    "calm and sunny day.",
    "[INST] Hello, did you see the big red kite flying over the park? [/INST] Yes, it was "
    "beautiful and the children were running after it happily.",
]


def test_read_tinychat_txt_in_the_generators_format(tmp_path: Path):
    path = tmp_path / "tinychat.txt"
    with path.open("a") as f:
        for text in TINYCHAT_REAL:
            f.write(text + "\n")
    convs = read_conversations(path)
    assert [[m["role"] for m in c] for c in convs] == [["user", "assistant"] * 2, ["user", "assistant"]]
    assert (
        convs[0][0]["content"] == "Good morning, the garden looks lovely after the rain, don't you think so?"
    )
    assert convs[0][3]["content"] == "That sounds like a wonderful plan for a calm and sunny day."
    assert convs[1][1]["content"].startswith("Yes, it was beautiful")


def test_read_tinychat_tar_in_jsongens_format(tmp_path: Path):
    path = tmp_path / "TinyChat_all_data.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for i, lines in enumerate([TINYCHAT_REAL[:1], TINYCHAT_REAL[1:]], 1):
            data = json.dumps([{"chat": line.strip()} for line in lines], indent=4).encode()
            info = tarfile.TarInfo(f"data{i}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    convs = read_conversations(path)
    assert [len(c) for c in convs] == [4, 2]
    assert convs == read_tinychat_txt_from_lines(tmp_path, TINYCHAT_REAL)


def read_tinychat_txt_from_lines(tmp_path: Path, lines: list[str]) -> list:
    path = tmp_path / "same.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return read_tinychat_txt(path)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("tinychat.txt", "just some prose, no turns\n", r"\[INST\] user \[/INST\] assistant"),
        ("chats.jsonl", "\n", r'"messages"'),
    ],
)
def test_a_file_without_conversations_is_an_error_naming_it(
    tmp_path: Path, name: str, text: str, expected: str
):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(
        ValueError, match=rf"{name}: no conversation with an answer found; expected .*{expected}"
    ):
        read_conversations(path)


def test_empty_exported_conversations_are_skipped_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "export.jsonl"
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path.write_text("".join(json.dumps(x) + "\n" for x in ({"messages": []}, chat, {"messages": []})))
    with caplog.at_level("WARNING"):
        assert read_conversations(path) == [chat["messages"]]
    assert "skipped 2 empty conversations" in caplog.text


def test_cap_prose_keeps_dialogue_whole_and_prose_to_its_share():
    chats = [
        [{"role": "user", "content": "x" * 50}, {"role": "assistant", "content": "y" * 50}]
    ] * 20  # 2,000
    prose = {"a": [f"{i:03d}" + "p" * 96 for i in range(30)], "b": [f"{i:03d}" + "q" * 96 for i in range(10)]}
    out = cap_prose({"chat": chats, **prose}, share=0.2, seed=1)
    assert out["chat"] == chats
    kept = sum(len(d) for name in ("a", "b") for d in out.get(name, []))
    assert 0 < kept <= 0.2 / 0.8 * 2000  # at most 20% of all the text
    assert set(out["a"]) <= set(prose["a"]) and cap_prose({"chat": chats, **prose}, 0.2, 1) == out
    assert cap_prose({"chat": chats, **prose}, share=0.9, seed=1) == {"chat": chats, **prose}  # under the cap


def test_an_sft_micro_batch_names_the_rows_it_drew() -> None:
    """Per-row flags (--keep's) are read at `rows`: they must be the rows x, y and the mask came from."""
    ids = torch.arange(40 * 9).reshape(40, 9)
    mask = torch.rand(40, 9) > 0.5
    for i in range(5):
        batch = micro_batch("sft", ids, mask, (4, 8), i, rank=1, world=2, seed=3)
        assert batch.rows is not None and len(set(batch.rows.tolist())) == 4
        assert torch.equal(batch.x, ids[batch.rows][:, :-1]) and torch.equal(batch.y, ids[batch.rows][:, 1:])
        assert batch.mask is not None and torch.equal(batch.mask, mask[batch.rows][:, 1:])
    windows = micro_batch(
        "pretrain", torch.arange(500), torch.ones(500, dtype=torch.bool), (4, 8), 0, 0, 1, 3
    )
    assert windows.rows is None and windows.mask is None and windows.x.shape == (4, 8)
