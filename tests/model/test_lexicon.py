"""Questions about words from a tiny WordNet written here: opposites both ways, "What is a dog?" with
its kind and gloss and the headword copied, either-or questions, and the spelling word list."""

from __future__ import annotations

from model.corpus.lexicon import (
    ANTONYM,
    EITHER_OR,
    MEANING,
    SYNONYM,
    WHAT_IS,
    Chat,
    WordNet,
    problems,
    word_list,
)

NOUNS = [
    "00015388 03 n 01 animal 0 000 | a living organism characterized by voluntary movement",
    "00017222 03 n 01 plant 0 000 | (botany) a living organism lacking the power of locomotion",
    "02083346 05 n 01 canine 0 001 @ 00015388 n 0000 | any of various fissiped mammals",
    "02084071 05 n 02 dog 0 domestic_dog 0 001 @ 02083346 n 0000 | a member of the genus Canis; "
    '"the dog barked all night"',
    "14845743 27 n 01 water 0 001 @ 00015388 n 0000 | binary compound that occurs as a clear liquid",
]
ADJECTIVES = [  # hot points to cold; cold points nowhere: the opposite still goes both ways
    "01247240 00 a 01 hot 0 001 ! 01251128 a 0101 | used of physical heat",
    "01251128 00 a 01 cold 0 000 | having a low temperature",
    "01382086 00 a 02 large 0 big 0 001 ! 01391351 a 0101 | above average in size",
    "01391351 00 a 01 small 0 000 | limited in size",
]
INDEX = {
    "noun": ["animal n 1 0 1 1 00015388", "plant n 1 0 1 1 00017222", "canine n 1 1 @ 1 1 02083346"]
    + ["dog n 1 1 @ 1 1 02084071", "water n 1 1 @ 1 1 14845743"],
    "adj": ["hot a 1 1 ! 1 1 01247240", "cold a 1 0 1 1 01251128", "large a 1 1 ! 1 1 01382086"]
    + ["big a 1 0 1 1 01382086", "small a 1 0 1 1 01391351"],
}
COUNTS = ["animal%1:03:00:: 1 50", "canine%1:05:00:: 1 1", "dog%1:05:00:: 1 30", "water%1:27:00:: 1 9"]
COUNTS += ["hot%3:00:01:: 1 20", "cold%3:00:01:: 1 15", "large%3:00:00:: 1 9", "big%3:00:01:: 1 8"]
COUNTS += ["small%3:00:00:: 1 9", "plant%1:03:00:: 1 5", "domestic_dog%1:05:00:: 1 2"]


def tiny_wordnet() -> WordNet:
    files = {f"{kind}.{pos}": b"" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")}
    files |= {f"{pos}.exc": b"" for pos in ("noun", "verb", "adj", "adv")}
    files["verb.exc"] = b"went go\n"
    files["data.noun"] = "\n".join(NOUNS).encode()
    files["data.adj"] = "\n".join(ADJECTIVES).encode()
    files["index.noun"] = ("  1 licence header\n" + "\n".join(INDEX["noun"])).encode()
    files["index.adj"] = "\n".join(INDEX["adj"]).encode()
    files["cntlist.rev"] = "\n".join(COUNTS).encode()
    return WordNet.parse(files)


CHAT = Chat.count(["I have a dog and two dogs.", "Water is wet, I drink water, water water.", "hot day"] * 3)


def test_opposites_go_both_ways_also_through_a_synonym():
    answers = {p.key: p.answer for p in problems(tiny_wordnet(), CHAT)[ANTONYM]}
    assert answers["hot"] == "The opposite of hot is cold."
    assert answers["cold"] == "The opposite of cold is hot."  # WordNet points one way only here
    assert answers["small"] == "The opposite of small is large."
    assert answers["big"] == "The opposite of big is small."  # "big" is "large", whose opposite is "small"


def test_what_is_a_dog_names_its_kind_and_gloss_and_copies_the_headword():
    by_kind = problems(tiny_wordnet(), CHAT)
    what = {p.key: p for p in by_kind[WHAT_IS]}
    # the most used ancestor, not WordNet's direct hypernym ("canine")
    assert what["dog"].answer == "A dog is a kind of animal: a member of the genus Canis."
    assert what["dog"].fields == {"t": "a dog"}
    assert what["water"].answer.startswith("Water is a kind of animal: ")  # a mass noun: no article
    assert {p.key: p.answer for p in by_kind[MEANING]}["dog"] == (
        'The word dog means a member of the genus Canis. For example: "the dog barked all night".'
    )
    synonyms = {p.key: p.answer for p in by_kind[SYNONYM]}
    assert synonyms["big"] == "Another word for big is large." and "dog" not in synonyms  # one word only


def test_either_or_answers_the_category_and_offers_another():
    (dog,) = [p for p in problems(tiny_wordnet(), CHAT)[EITHER_OR] if p.key == "dog"]
    assert dog.answer.startswith("A dog is an animal, not ")
    options = {dog.fields["x"], dog.fields["y"]}
    assert "an animal" in options and dog.answer.endswith(f"not {(options - {'an animal'}).pop()}.")


def test_the_word_list_has_lemmas_their_forms_and_everyday_chat_words():
    chat = Chat.count(["the dogs went home, the the the"] * 40)
    words = word_list(tiny_wordnet(), chat)
    assert {"dog", "hot", "went", "dogs", "the"} <= set(words)  # lemma, irregular form, inflection, frequent
    assert "canine" in words and "domestic" not in words
