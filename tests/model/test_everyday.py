"""bench/everyday.py: its verdicts, and the served engine's greedy answers it reads."""

from bench.everyday import SETS, greedy_answers, verdict
from model.config import DEFAULT_CHECKPOINT


def test_each_set_has_20_prompts_each_asked_once():
    prompts = [prompt for items in SETS.values() for prompt, _ in items]
    assert [len(items) for items in SETS.values()] == [20, 20]
    assert len(set(prompts)) == len(prompts)


def test_verdicts_read_the_answer_for_its_one_right_answer():
    pattern = dict(SETS["A"])["Which is bigger, 42 or 24?"]
    assert verdict("42 is bigger than 24.", pattern) == "right"
    assert verdict("24 is bigger than 42.", pattern) == "wrong"
    spelled = dict(SETS["A"])["How many letters are in the word apple?"]
    assert verdict("The word apple is spelled a-p-p-l-e, so it has 5 letters.", spelled) == "right"
    assert verdict("The word apple is spelled a-m-p-l-e, so it has 5 letters.", spelled) == "wrong"
    either = dict(SETS["B"])["Is ice hot or cold?"]
    assert verdict("Ice is cold.", either) == "right"
    assert verdict("Cold, not hot.", either) == "right"
    assert verdict("Wing up is a hot, not hot. I'm not a fan of the cold.", either) == "wrong"
    assert verdict("Hello! How are you?", None) == "judge"
    # a loop is a loop whatever it says
    assert verdict("I like the food, I like the food", None) == "loop"
    assert verdict("19, I like the food, I like the food", r"\b19\b") == "loop"


def test_greedy_answers_come_from_the_served_engine_and_stop_at_the_end_of_the_answer():
    answers = greedy_answers(DEFAULT_CHECKPOINT, ["What is 12 plus 7?", "Hi there!"], max_new_tokens=24)
    assert len(answers) == 2 and all(answers)
    assert "19" in answers[0]
    assert "<|" not in "".join(answers)  # <|eos|> ends an answer, it is not part of it
