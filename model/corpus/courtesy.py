"""Courtesy and closing turns, written here: thanks, goodbye, have a nice day, sorry, how was your
day, greetings. Each is said in many ways and answered in a few; a dialogue has it as its first
turn or after an exchange of the other generated sources, so a first turn is no longer always a
greeting and "Thank you!" gets "You're welcome!".
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from model.data import Messages

# act -> (what the user says, how the assistant answers)
ACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "thanks": (
        (
            "Thank you!",
            "Thanks!",
            "thanks",
            "Thank you so much!",
            "Thanks a lot.",
            "Thank you very much.",
            "thx",
            "Thanks for your help!",
            "Thank you, that helps.",
            "Many thanks!",
            "Cheers, thanks!",
            "ty",
            "Great, thanks!",
            "Thanks, that was helpful.",
            "I appreciate it, thank you.",
        ),
        (
            "You're welcome!",
            "You're welcome! Happy to help.",
            "My pleasure!",
            "You're welcome. Anything else?",
            "Glad I could help!",
            "No problem!",
        ),
    ),
    "goodbye": (
        (
            "Goodbye!",
            "Bye!",
            "bye",
            "Bye bye!",
            "See you later!",
            "See you!",
            "I have to go now. Bye!",
            "Talk to you later.",
            "Goodbye, see you soon.",
            "I'm leaving now, bye.",
            "Catch you later!",
            "Farewell!",
            "Gotta go, bye!",
            "ok bye",
            "See you tomorrow!",
        ),
        (
            "Goodbye! Have a nice day.",
            "Bye! Take care.",
            "See you later!",
            "Goodbye! It was nice talking to you.",
            "Bye! Come back anytime.",
        ),
    ),
    "nice_day": (
        (
            "Have a nice day!",
            "Have a good day!",
            "have a nice day",
            "Have a great day!",
            "Enjoy your day!",
            "Have a good one!",
            "Have a lovely day.",
            "Have a nice evening!",
            "Have a good weekend!",
            "Take care!",
        ),
        ("Thank you, you too!", "Thanks, you too!", "You too! Take care.", "Thank you! Have a nice day too."),
    ),
    "good_night": (
        (
            "Good night!",
            "Good night.",
            "good night",
            "Night night!",
            "I'm going to bed. Good night!",
            "Sleep well!",
            "Sweet dreams!",
            "Time for bed, good night.",
        ),
        ("Good night! Sleep well.", "Good night! Sweet dreams.", "Sleep well! Talk to you tomorrow."),
    ),
    "sorry": (
        (
            "Sorry!",
            "I'm sorry.",
            "sorry",
            "Sorry about that.",
            "My apologies.",
            "Oops, sorry!",
            "I apologize.",
            "Sorry, my mistake.",
            "Sorry for the trouble.",
            "Sorry, I was wrong.",
        ),
        (
            "No problem at all!",
            "That's okay, don't worry about it.",
            "No worries!",
            "It's alright, no harm done.",
        ),
    ),
    "how_was_day": (
        (
            "How was your day?",
            "How was your day today?",
            "how was your day",
            "How's your day going?",
            "How has your day been?",
            "Did you have a good day?",
            "How is your day?",
            "How was your weekend?",
        ),
        (
            "It was good, thank you! How was yours?",
            "Pretty good, thanks for asking! How about you?",
            "It's going well, thank you. How is your day going?",
        ),
    ),
    "nice_to_meet": (
        (
            "Nice to meet you!",
            "Nice to meet you.",
            "nice to meet you",
            "Pleased to meet you.",
            "It's nice to meet you!",
            "Good to meet you.",
        ),
        ("Nice to meet you too!", "Pleased to meet you too!", "Likewise, nice to meet you!"),
    ),
    "greeting": (
        (
            "Hello!",
            "Hi!",
            "hi",
            "Hey!",
            "hello",
            "Hi there!",
            "Hey there.",
            "Good morning!",
            "Good afternoon!",
            "Good evening!",
            "Hello there!",
            "Howdy!",
            "Greetings!",
            "hey",
            "Hi, how are you?",
        ),
        (
            "Hello! How can I help you today?",
            "Hi! How are you?",
            "Hello there!",
            "Hey! What's up?",
            "Hi! Nice to hear from you.",
        ),
    ),
    "well_done": (
        (
            "Good job!",
            "Well done!",
            "Nice!",
            "Great answer!",
            "That's right!",
            "Awesome, thanks!",
            "Perfect!",
            "You're smart!",
            "Cool!",
            "Impressive.",
        ),
        ("Thank you!", "Thanks! Glad it helped.", "Thank you, that's kind of you!"),
    ),
}
# greetings answered in kind: a reply that names the time of day, where the user named it
IN_KIND = {"Good morning!": "Good morning! How can I help you?", "Good afternoon!": "Good afternoon! How can I help?",
           "Good evening!": "Good evening! How can I help?"}  # fmt: skip
# what may follow an exchange: not a greeting
CLOSING = [act for act in ACTS if act not in ("greeting", "nice_to_meet")]


def turn(act: str, rng: random.Random) -> Messages:
    said = rng.choice(ACTS[act][0])
    answer = IN_KIND.get(said) or rng.choice(ACTS[act][1])
    return [{"role": "user", "content": said}, {"role": "assistant", "content": answer}]


def dialogues(exchanges: Sequence[Messages], n: int, seed: int) -> list[Messages]:
    """n dialogues: a third a courtesy turn alone (a first turn), a third a courtesy turn after one of
    `exchanges` (trained question-and-answer pairs), a third a greeting, an exchange and a closing."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0 or not exchanges:
            out.append(turn(rng.choice(list(ACTS)), rng))
        elif i % 3 == 1:
            act = rng.choice(CLOSING)
            out.append([*rng.choice(exchanges), *turn(act, rng)])
        else:
            out.append([*turn("greeting", rng), *rng.choice(exchanges), *turn(rng.choice(CLOSING), rng)])
    return out
