"""The Kneser-Ney baselines on a corpus small enough to work out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from model.ngram import KneserNey

# one sequence 0 1 0 1 2 over a vocabulary of 3: bigrams (0,1) twice, (1,0) and (1,2) once
SEQ = [0, 1, 0, 1, 2]


def test_bigram_equals_the_hand_computed_value():
    lm = KneserNey(2, vocab_size=3).fit([SEQ])
    # unigram continuation counts are all 1 (each token follows exactly one other), so D1 = 1 and
    # P1(w) = 0 + 1 * 3/3 * 1/3 = 1/3; bigram counts 2, 1, 1 give D2 = 2 / (2 + 2 * 1) = 0.5
    assert lm.prob([0], 1) == pytest.approx((2 - 0.5) / 2 + 0.5 * 1 / 2 * (1 / 3))  # 0.8333
    assert lm.prob([0], 2) == pytest.approx(0.5 * 1 / 2 * (1 / 3))  # unseen after 0: 0.0833
    assert lm.prob([1], 0) == pytest.approx((1 - 0.5) / 2 + 0.5 * 2 / 2 * (1 / 3))  # 0.4167
    assert lm.prob([2], 0) == pytest.approx(1 / 3)  # an unseen context falls back to P1
    rows, masks = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 1]])
    nats, count = lm.score(rows, masks)
    assert count == 2 and nats == pytest.approx(-math.log(0.8333333) - math.log(0.4166667), rel=1e-6)


@pytest.mark.parametrize("order", [2, 3])
def test_each_context_is_a_distribution(order: int):
    lm = KneserNey(order, vocab_size=5).fit([[0, 1, 2, 3, 1, 2, 4, 0, 1, 3], [2, 2, 1, 0]])
    for context in ([], [1], [0, 1], [4, 4], [2, 1]):
        assert sum(lm.prob(context, w) for w in range(5)) == pytest.approx(1.0)


def test_trigram_uses_two_tokens_of_context():
    lm = KneserNey(3, vocab_size=4).fit([[0, 1, 2] * 5 + [3, 1, 0] * 5])
    assert lm.prob([0, 1], 2) > 0.8 and lm.prob([3, 1], 0) > 0.8  # the bigram alone cannot tell these apart
    with pytest.raises(ValueError, match="order"):
        KneserNey(4, 4)
