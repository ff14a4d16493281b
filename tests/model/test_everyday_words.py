"""model/everyday_words.py: which rows are about which word, and the mix that repeats the frequent ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
from model.everyday_words import frequent_words, parse, repeat, subject
from model.tokenizer import Tokenizer
from model.train import main, parse_args
from tests.model.helpers import TINY


def qa(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_spec_is_two_whole_numbers():
    assert parse("2000=6") == (2000, 6)
    for bad in ("2000", "=6", "2000=", "0=6", "10=0", "a=6", "10=2.5", "-1=3"):
        with pytest.raises(ValueError, match="N=TIMES"):
            parse(bad)


@pytest.mark.parametrize(
    ("answer", "word"),
    [
        ("The word cat is spelled c-a-t.", "cat"),
        ("The word apple is spelled a-p-p-l-e, so it has 5 letters.", "apple"),
        ("The word happy means feeling or showing pleasure.", "happy"),
        ("A dog is a kind of animal: a domesticated canine.", "dog"),
        ("An egg is a kind of food: an oval reproductive body.", "egg"),
        ("The opposite of Fast is slow.", "fast"),
        ("Another word for big is large.", "big"),
        ("A worktable is a piece of furniture, not a vegetable.", "worktable"),
        ("Humorist is a person, not a flower.", "humorist"),
        # not a question about one word
        ("The capital of France is Paris.", None),
        ("12 + 7 = 19.", None),
        ("42 is bigger than 24.", None),
        ("The day after Monday is Tuesday.", None),
        ("A group of ducks is called a paddling.", None),
    ],
)
def test_the_subject_is_the_word_the_answer_is_about(answer: str, word: str | None):
    assert subject(qa("a question", answer)) == word


def test_only_one_question_and_its_answer_has_a_subject():
    assert subject(qa("Hi", "The word cat is spelled c-a-t.") + qa("Thanks", "You're welcome.")) is None
    assert subject([{"role": "assistant", "content": "The word cat is spelled c-a-t."}]) is None
    assert subject([qa("x", "y")[1], qa("The word cat is spelled c-a-t.", "y")[0]]) is None


def test_frequent_words_are_counted_in_every_message_lower_case():
    chats = [qa("The cat sat", "A cat! the dog?"), qa("cat dog", "bird dog")]
    assert frequent_words(chats, 1) == {"cat"}  # 3 each: the first seen
    assert frequent_words(chats, 2) == {"cat", "dog"}
    assert frequent_words(chats, 3) == {"cat", "dog", "the"}  # "The" and "the"


def test_rows_about_frequent_words_come_times_times_and_nothing_else_moves():
    chitchat = [qa("Do you have a cat?", "Yes, a cat and a cat toy."), qa("And a dog?", "A dog too.")]
    about_cat = qa("How do you spell cat?", "The word cat is spelled c-a-t.")
    about_dog = qa("What is a dog?", "A dog is a kind of animal.")
    rare = qa("How do you spell zebu?", "The word zebu is spelled z-e-b-u.")
    sum_ = qa("What is 2 + 2?", "2 + 2 = 4.")
    train = {
        "chitchat": chitchat,
        "chatterbot": [qa("hello", "hi")],
        "skills": [about_cat, rare, sum_],
        "wordnet_qa": [about_dog],
        "encyclopedia": [qa("Tell me about a cat.", "A cat is a kind of animal.")],
    }
    out, added = repeat(train, "2=3")  # the two most frequent: "a" and "cat"
    assert out["skills"] == [about_cat, rare, sum_, about_cat, about_cat]
    assert out["wordnet_qa"] == [about_dog] and added == {"skills": 2, "wordnet_qa": 0}
    # only the generated sources of word questions repeat; the others and the input stay as they were
    assert out["encyclopedia"] == train["encyclopedia"] and out["chitchat"] == chitchat
    assert train["skills"] == [about_cat, rare, sum_]
    out, added = repeat(train, "4=2")  # now "and" and "dog" too (2 each: ties go in the order first seen)
    assert out["wordnet_qa"] == [about_dog, about_dog] and added == {"skills": 1, "wordnet_qa": 1}
    assert repeat(train, "50=1")[0] == train  # once: as it was
    with pytest.raises(ValueError, match="chatterbot"):
        repeat({k: v for k, v in train.items() if k != "chatterbot"}, "2=3")


def test_the_training_script_repeats_them_and_records_it(tmp_path: Path):
    data = tmp_path / "data"
    rows = {
        "chitchat": [qa("Do you like cats?", "I like my cat, a cat is fun.")] * 4,
        "chatterbot": [qa("What is a cat?", "A cat is a pet.")] * 2,
        "skills": [qa("Spell cat.", "The word cat is spelled c-a-t."), qa("Spell yak.", "The word yak is spelled y-a-k.")],
    }  # fmt: skip
    for split in ("train", "val"):
        (data / split).mkdir(parents=True)
        for name, convs in rows.items():
            (data / split / f"{name}.jsonl").write_text(
                "".join(json.dumps({"messages": c}) + "\n" for c in convs)
            )
    texts = [m["content"] for convs in rows.values() for c in convs for m in c] * 20
    Tokenizer.train(texts, vocab_size=300, show_progress=False).save(data / "tokenizer.json")
    args = ["--stage", "sft", "--data", str(data), "--tokenizer", str(data / "tokenizer.json"), "--threads", "1",
            "--dtype", "fp32", "--eval-batches", "1", "--eval-every", "0", "--batch-size", "2", *TINY,
            "--max-steps", "1", "--everyday", "5=4", "--upsample", "skills=2"]  # fmt: skip
    main([*args, "--out", str(tmp_path / "run")])
    data_info = load_checkpoint(tmp_path / "run")[2]["data"]["sft"]
    # the cat row three more times, then the whole source twice: 2 rows -> 5 -> 10
    assert data_info["everyday"] == {"spec": "5=4", "rows_added": {"skills": 3}}
    assert data_info["sources"]["skills"] == 10
    with pytest.raises(SystemExit):
        parse_args([*args, "--out", str(tmp_path / "bad"), "--everyday", "5"])
    (data / "train" / "chatterbot.jsonl").unlink()
    with pytest.raises(SystemExit, match="ranked by chitchat, chatterbot: no chatterbot"):
        main([*args, "--out", str(tmp_path / "none")])
